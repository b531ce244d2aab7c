"""kvc as a LlamaIndex response synthesizer: the retrieved nodes and the query in, a Response out.

    from llama_index.core.query_engine import RetrieverQueryEngine
    from kvc_client.integrations.llamaindex import KvcSynthesizer

    engine = RetrieverQueryEngine(retriever, response_synthesizer=KvcSynthesizer("localhost:50051", ratio=4))
    response = engine.query("Who was the chief engineer?")
    str(response), response.metadata["kvc"]["ratio"], response.metadata["kvc"]["document_cache_hits"]

Each node's text (get_content with MetadataMode.LLM, as LlamaIndex's own synthesizers read it) goes to kvc as
one document, labelled with the node id; kvc composes them, where LlamaIndex's synthesizers would pack or
refine them into prompts. Response.metadata keeps LlamaIndex's per-node metadata and adds kvc's under "kvc".
LlamaIndex has no exception type of its own for a failed model call, so kvc's errors are raised as
KvcSynthesizerError, a KvcError (code() is the gRPC status).
"""
from __future__ import annotations

import asyncio
from typing import Any, Sequence

from llama_index.core.llms.mock import MockLLM
from llama_index.core.response_synthesizers import BaseSynthesizer
from llama_index.core.schema import NodeWithScore

from .core import KvcAnswerer, KvcError


class KvcSynthesizerError(KvcError):
    """An error status from kvc inside KvcSynthesizer."""


class _Reply(str):
    """The answer text, which is what get_response returns, carrying kvc's metadata to the Response."""

    kvc: dict


class KvcSynthesizer(BaseSynthesizer):
    """Synthesizes the response through kvc. The settings after address are KvcAnswerer's: token, method,
    ratio or target_tokens, options, max_tokens, system_prompt, reuse_documents, timeout, ..."""

    def __init__(self, address: str = "localhost:50051", **settings: Any):
        # BaseSynthesizer sizes prompts with an LLM's metadata and otherwise resolves the default LLM (an
        # OpenAI client). kvc builds and decodes the prompt itself, so a MockLLM stands in and is never called.
        super().__init__(llm=MockLLM())
        self.answerer = KvcAnswerer(address, error_type=lambda code: KvcSynthesizerError, **settings)

    def _get_prompts(self) -> dict[str, Any]:
        return {}

    def _update_prompts(self, prompts: dict[str, Any]) -> None:
        pass

    def get_response(self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any) -> str:
        # synthesize() passes the node ids along; a direct get_response call has none.
        ids = response_kwargs.get("node_ids") or [None] * len(text_chunks)
        documents = [{"text": text, "id": i} if i else text for text, i in zip(text_chunks, ids)]
        answer = self.answerer.answer(documents, query_str)
        reply = _Reply(answer.text)
        reply.kvc = answer.metadata
        return reply

    async def aget_response(self, query_str: str, text_chunks: Sequence[str], **response_kwargs: Any) -> str:
        return await asyncio.to_thread(self.get_response, query_str, text_chunks, **response_kwargs)

    def synthesize(self, query, nodes: list[NodeWithScore], additional_source_nodes=None, **response_kwargs):
        return super().synthesize(query, nodes, additional_source_nodes,
                                  node_ids=[n.node.node_id for n in nodes], **response_kwargs)

    async def asynthesize(self, query, nodes: list[NodeWithScore], additional_source_nodes=None,
                          **response_kwargs):
        return await super().asynthesize(query, nodes, additional_source_nodes,
                                         node_ids=[n.node.node_id for n in nodes], **response_kwargs)

    def _prepare_response_output(self, response_str, source_nodes: list[NodeWithScore]):
        response = super()._prepare_response_output(response_str, source_nodes)
        if isinstance(response_str, _Reply):
            response.metadata = {**(response.metadata or {}), "kvc": response_str.kvc}
        return response
