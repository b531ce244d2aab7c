"""kvc as a LangChain Runnable: {"documents": retrieved documents, "question": str} -> AIMessage.

    from langchain_core.runnables import RunnablePassthrough
    from kvc_client.integrations.langchain import KvcRunnable

    chain = {"documents": retriever, "question": RunnablePassthrough()} | KvcRunnable("localhost:50051", ratio=4)
    message = chain.invoke("Who was the chief engineer?")
    message.content, message.response_metadata["ratio"], message.response_metadata["document_cache_hits"]

Documents are langchain_core Documents (page_content; id, when set, is sent as kvc's document label) or
strings. The AIMessage carries kvc's metadata (see KvcAnswerer.answer) as response_metadata and the token
counts as usage_metadata, with the compressed context as cache reads. kvc's errors are raised as LangChain's
model errors (ModelInvalidRequestError for a bad request, ModelRateLimitError for a full queue, ...), each a
KvcError too, so code() gives the gRPC status.
"""
from __future__ import annotations

from typing import Any, Mapping

import grpc
from langchain_core import exceptions as lc
from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableConfig

from .core import KvcAnswerer, KvcError


class KvcLangChainError(KvcError, lc.ModelError):
    """A kvc status with no closer LangChain counterpart (INTERNAL, DATA_LOSS, UNKNOWN, ...)."""


class KvcInvalidRequestError(KvcLangChainError, lc.ModelInvalidRequestError):
    pass


class KvcAuthenticationError(KvcLangChainError, lc.ModelAuthenticationError):
    pass


class KvcPermissionDeniedError(KvcLangChainError, lc.ModelPermissionDeniedError):
    pass


class KvcRateLimitError(KvcLangChainError, lc.ModelRateLimitError):
    pass


class KvcConnectionError(KvcLangChainError, lc.ModelConnectionError):
    pass


class KvcTimeoutError(KvcLangChainError, lc.ModelTimeoutError):
    pass


# LangChain's retry helpers read is_retryable; kvc's clients retry UNAVAILABLE only (docs/api.md), and a full
# queue (RESOURCE_EXHAUSTED) clears as the queue drains.
_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: KvcInvalidRequestError,
    grpc.StatusCode.OUT_OF_RANGE: KvcInvalidRequestError,
    grpc.StatusCode.FAILED_PRECONDITION: KvcInvalidRequestError,
    grpc.StatusCode.NOT_FOUND: KvcInvalidRequestError,
    grpc.StatusCode.UNAUTHENTICATED: KvcAuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: KvcPermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: KvcRateLimitError,
    grpc.StatusCode.UNAVAILABLE: KvcConnectionError,
    grpc.StatusCode.DEADLINE_EXCEEDED: KvcTimeoutError,
}


def error_type(code: grpc.StatusCode) -> type[KvcLangChainError]:
    return _ERRORS.get(code, KvcLangChainError)


def _document(doc) -> str | dict:
    if isinstance(doc, Document):
        return {"text": doc.page_content, "id": doc.id} if doc.id else doc.page_content
    if isinstance(doc, str):
        return doc
    raise TypeError(f"documents: a langchain_core Document or a str, not {type(doc).__name__}")


class KvcRunnable(Runnable[Mapping[str, Any], AIMessage]):
    """Answers {"documents", "question"} through kvc. The arguments are KvcAnswerer's: address, token, method,
    ratio or target_tokens, options, max_tokens, system_prompt, reuse_documents, timeout, ..."""

    def __init__(self, address: str = "localhost:50051", **settings: Any):
        self.answerer = KvcAnswerer(address, error_type=error_type, **settings)

    def _answer(self, input: Mapping[str, Any]) -> AIMessage:
        if not isinstance(input, Mapping) or "question" not in input or "documents" not in input:
            raise TypeError(f"KvcRunnable takes a mapping with 'documents' and 'question', not {input!r:.200}")
        answer = self.answerer.answer([_document(d) for d in input["documents"]], input["question"])
        meta = answer.metadata
        cached = meta["tokens_out"]
        prompt = meta["prompt_tokens"] or 0
        generated = meta["generated_tokens"] or 0
        return AIMessage(content=answer.text, response_metadata={"model_provider": "kvc", **meta},
                         usage_metadata={"input_tokens": cached + prompt, "output_tokens": generated,
                                         "total_tokens": cached + prompt + generated,
                                         "input_token_details": {"cache_read": cached}})

    def invoke(self, input: Mapping[str, Any], config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        return self._call_with_config(self._answer, input, config, run_type="llm")
