"""kvc as a Haystack component: run(documents, query) -> {"replies": [answer], "meta": [kvc's metadata]}.

    from haystack import Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from kvc_client.integrations.haystack import KvcAnswerGenerator

    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(document_store, top_k=3))
    pipe.add_component("kvc", KvcAnswerGenerator("localhost:50051", ratio=4))
    pipe.connect("retriever.documents", "kvc.documents")
    out = pipe.run({"retriever": {"query": q}, "kvc": {"query": q}})
    out["kvc"]["replies"][0], out["kvc"]["meta"][0]["document_cache_hits"]

Each Document's content goes to kvc as one document, labelled with its id. The bearer token is a Haystack
Secret (Secret.from_env_var("MY_TOKEN_VARIABLE")), so a serialized pipeline never holds it. kvc's errors are
raised as KvcComponentError, a haystack ComponentError and a KvcError (code() is the gRPC status); a
Pipeline wraps it in PipelineRuntimeError with the KvcComponentError as __cause__.
"""
from __future__ import annotations

from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.errors import ComponentError
from haystack.utils import Secret, deserialize_secrets_inplace

from .core import KvcAnswerer, KvcError


class KvcComponentError(KvcError, ComponentError):
    """An error status from kvc inside a Haystack component."""


@component
class KvcAnswerGenerator:
    """Answers a query from the retrieved documents through kvc. The settings after address and token are
    KvcAnswerer's: method, ratio or target_tokens, options, max_tokens, system_prompt, reuse_documents,
    timeout, ..."""

    def __init__(self, address: str = "localhost:50051", *, token: Secret | None = None, **settings: Any):
        self.address = address
        self.token = token
        self.settings = settings
        self.answerer = KvcAnswerer(address, token=token.resolve_value() if token else None,
                                    error_type=lambda code: KvcComponentError, **settings)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, address=self.address, token=self.token.to_dict() if self.token else None,
                               **self.settings)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "KvcAnswerGenerator":
        deserialize_secrets_inplace(data["init_parameters"], keys=["token"])
        return default_from_dict(cls, data)

    @component.output_types(replies=list[str], meta=list[dict[str, Any]])
    def run(self, documents: list[Document], query: str) -> dict[str, Any]:
        texts = []
        for doc in documents:
            if not doc.content:
                raise ValueError(f"documents: document {doc.id} has no text content for kvc to read")
            texts.append({"text": doc.content, "id": doc.id})
        answer = self.answerer.answer(texts, query)
        return {"replies": [answer.text], "meta": [answer.metadata]}
