"""The call behind every orchestrator component: retrieved documents and a question in, kvc's answer out.

    with KvcAnswerer("localhost:50051", method="focus", ratio=4) as kvc:
        answer = kvc.answer(["first retrieved text", {"text": "second", "id": "doc-7"}], "Who built it?")
        print(answer.text, answer.metadata["ratio"], answer.metadata["document_cache_hits"])

It needs none of the orchestration libraries; their modules wrap it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Callable, Iterator, Mapping, Sequence

import grpc

from ..client import DEFAULT_TIMEOUT, KvcClient
from .._stubs import compressor_pb2, generator_pb2

# The README's demo ratio: about half the context kept, which the packaged SmolLM2 still answers from.
DEFAULT_RATIO = 2.0


class KvcError(grpc.RpcError):
    """An error status from kvc. Like a failed grpc.Call it has code() (a grpc.StatusCode) and details();
    `rpc` names the call that failed (Precompute, Compress or Generate)."""

    def __init__(self, rpc: str, code: grpc.StatusCode, details: str):
        super().__init__(f"kvc {rpc} failed with {code.name}: {details}")
        self.rpc = rpc
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@dataclasses.dataclass
class KvcAnswer:
    """The answer's text and what kvc reports about it; KvcAnswerer.answer lists the metadata keys."""

    text: str
    metadata: dict


def _finish_reason(value: int) -> str:
    return generator_pb2.FinishReason.Name(value).removeprefix("FINISH_REASON_").lower()


class KvcAnswerer:
    """Answers a question from retrieved documents through one kvc server.

    address: "host:port" of a server playing the compress, cache and generate roles (or a proxy in front
    of them); token: its bearer token; root_certificates: PEM bytes for TLS. method, ratio or target_tokens
    and options: the compression (docs/methods.md; the default is focus at ratio 2). max_tokens: the longest
    answer. system_prompt: the system turn of every cache (unset: the server's). cache_dtype: storage type of
    the compressed cache. timeout: seconds per call.

    reuse_documents: False (the default) sends the texts to one Compress: a prefill of the joined documents
    per question; the compressed cache is a store hit when documents and question repeat (for a method that
    ignores the question, whenever the documents repeat). True gives each document a full KV cache of its
    own first (Precompute FULL; its id is a hash of the document's tokens, so a document stored before, by
    an earlier question or a precompute of the corpus, is a hit and is not prefilled again), and the
    question then selects from the composed caches with no prefill of the documents. That selection has no
    document queries or token text to work with (docs/methods.md), so at the same ratio it keeps worse than
    a Compress from text; on the packaged SmolLM2 at ratio 2 examples/rag answers fewer questions with it.

    error_type maps a gRPC status code to the KvcError subclass raised for it; the library modules pass
    their own.
    """

    def __init__(self, address: str = "localhost:50051", *, token: str | None = None, method: str = "focus",
                 ratio: float | None = None, target_tokens: int | None = None,
                 options: Mapping[str, object] | None = None, max_tokens: int = 256,
                 system_prompt: str | None = None, cache_dtype: str | None = None, reuse_documents: bool = False,
                 timeout: float | None = DEFAULT_TIMEOUT, root_certificates: bytes | None = None,
                 error_type: Callable[[grpc.StatusCode], type[KvcError]] = lambda code: KvcError):
        if ratio is not None and target_tokens is not None:
            raise ValueError("pass ratio or target_tokens, not both")
        self.address = address
        self.method = method
        self.ratio = DEFAULT_RATIO if ratio is None and target_tokens is None else ratio
        self.target_tokens = target_tokens
        self.options = dict(options or {})
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.cache_dtype = cache_dtype
        self.reuse_documents = reuse_documents
        self._error_type = error_type
        self.client = KvcClient(address, token=token, timeout=timeout, root_certificates=root_certificates)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "KvcAnswerer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _calling(self, rpc: str) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as e:
            if isinstance(e, KvcError):
                raise
            raise self._error_type(e.code())(rpc, e.code(), e.details()) from e

    def precompute(self, documents: Sequence) -> compressor_pb2.PrecomputeResponse:
        """Stores the full KV cache of each document (str or {"text", "id"}) ahead of any question: the
        caches answer() reuses. Documents already stored come back as cache hits."""
        with self._calling("Precompute"):
            return self.client.precompute(documents, mode="full", system_prompt=self.system_prompt)

    def answer(self, documents: Sequence, question: str) -> KvcAnswer:
        """The answer to `question` from `documents` (each a str or {"text", "id"}, in retrieval order).

        metadata: server, method, ratio (tokens_in / tokens_out, as achieved), requested_ratio or
        target_tokens, tokens_in, tokens_out, cache_id and cache_hit (of the compressed cache),
        document_cache_ids and document_cache_hits (how many documents were already stored; empty and 0
        with reuse_documents=False), documents, prompt_tokens, generated_tokens, finish_reason and seconds.
        """
        documents = list(documents)
        if not documents:
            raise ValueError("no documents to answer from: the retriever returned none")
        start = time.monotonic()
        budget = {"ratio": self.ratio} if self.target_tokens is None else {"target_tokens": self.target_tokens}
        spec = dict(method=self.method, options=self.options, cache_dtype=self.cache_dtype, **budget)
        document_cache_ids, document_cache_hits = [], 0
        if self.reuse_documents:
            results = self.precompute(documents).results
            document_cache_ids = [r.cache_id for r in results]
            document_cache_hits = sum(r.cache_hit for r in results)
            with self._calling("Compress"):
                compressed = self.client.compress(query=question, document_cache_ids=document_cache_ids, **spec)
        else:
            with self._calling("Compress"):
                compressed = self.client.compress(documents, question, system_prompt=self.system_prompt, **spec)
        with self._calling("Generate"):
            generated = self.client.generate_text(compressed.cache_id, question, max_tokens=self.max_tokens)
        info, usage = compressed.info, generated.usage
        metadata = {
            "server": self.address,
            "method": info.spec.method or self.method,
            "ratio": round(info.tokens_in / info.tokens_out, 3) if info.tokens_out else None,
            **({"requested_ratio": self.ratio} if self.target_tokens is None else budget),
            "tokens_in": info.tokens_in,
            "tokens_out": info.tokens_out,
            "cache_id": compressed.cache_id,
            "cache_hit": compressed.cache_hit,
            "document_cache_ids": document_cache_ids,
            "document_cache_hits": document_cache_hits,
            "documents": len(documents),
            "prompt_tokens": usage.prompt_tokens if usage else None,
            "generated_tokens": usage.generated_tokens if usage else None,
            "finish_reason": _finish_reason(usage.finish_reason) if usage else None,
            "seconds": round(time.monotonic() - start, 3),
        }
        return KvcAnswer(generated.text, metadata)
