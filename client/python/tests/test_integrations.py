"""The LangChain, Haystack and LlamaIndex components against a real kvc-server on its embedded default model
(label model: needs KVC_SERVER_BIN and the libraries pinned in scripts/requirements.txt).

For each library: an answer through the library's own plumbing (an LCEL chain, a Pipeline with a BM25
retriever, a query engine) with kvc's metadata; with reuse_documents (LangChain, LlamaIndex) the same
documents under another question find every document's cache stored; the same question again finds the
compressed cache stored; and a request the server refuses comes out as the library's exception with the
gRPC status code.
"""
import os

import grpc
import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # no network here; and never phone home from tests

pytestmark = pytest.mark.model

DOCUMENTS = {
    "bridge": "The Harbor Bridge over the Kell estuary opened in 1932. Its chief engineer was Lena Ortiz, who "
              "designed the steel arch with a main span of 503 metres.",
    "museum": "The Kell City Museum opens at 9 am every day except Monday. Entry costs 12 euros for adults "
              "and is free for children under 16.",
    "tunnel": "The Ostra rail tunnel, 14 kilometres long, was dug between 1961 and 1968 under the Ostra range "
              "and carries two tracks.",
}
QUESTION = "Who was the chief engineer of the Harbor Bridge?"
OTHER_QUESTION = "When did the Harbor Bridge open?"


def check_answer(text: str, meta: dict, *, documents: int, reused: bool) -> None:
    assert text.strip(), meta
    assert meta["method"] == "focus" and meta["requested_ratio"] == 2.0
    assert meta["tokens_in"] > meta["tokens_out"] > 0 and meta["ratio"] > 1
    assert len(meta["cache_id"]) == 64 and meta["documents"] == documents
    assert len(meta["document_cache_ids"]) == (documents if reused else 0)
    assert meta["generated_tokens"] > 0 and meta["finish_reason"] in ("eos", "length", "stop")


# LangChain


def test_langchain_runnable_answers_and_reuses_the_documents(kvc_server):
    from langchain_core.documents import Document
    from langchain_core.messages import AIMessage
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    from kvc_client.integrations.langchain import KvcRunnable

    docs = [Document(page_content=DOCUMENTS[k], id=k) for k in ("bridge", "museum")]
    kvc = KvcRunnable(kvc_server.address, ratio=2, max_tokens=32, reuse_documents=True)
    chain = {"documents": RunnableLambda(lambda q: docs), "question": RunnablePassthrough()} | kvc
    message = chain.invoke(QUESTION)
    assert isinstance(message, AIMessage)
    meta = message.response_metadata
    check_answer(message.content, meta, documents=2, reused=True)
    assert meta["model_provider"] == "kvc"
    assert message.usage_metadata["input_token_details"]["cache_read"] == meta["tokens_out"]

    again = kvc.invoke({"documents": docs, "question": OTHER_QUESTION})
    assert again.response_metadata["document_cache_hits"] == 2
    assert again.response_metadata["document_cache_ids"] == meta["document_cache_ids"]
    assert again.response_metadata["cache_hit"] is False
    same = kvc.invoke({"documents": docs, "question": QUESTION})
    assert same.response_metadata["cache_hit"] is True and same.content == message.content


def test_langchain_errors_are_model_errors_with_the_grpc_code(kvc_server):
    from langchain_core.exceptions import ModelInvalidRequestError

    from kvc_client.integrations import KvcError
    from kvc_client.integrations.langchain import KvcRunnable

    with pytest.raises(ModelInvalidRequestError) as e:
        KvcRunnable(kvc_server.address, ratio=0.5).invoke({"documents": [DOCUMENTS["tunnel"]], "question": "How long?"})
    assert isinstance(e.value, KvcError) and isinstance(e.value, grpc.RpcError)
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and e.value.rpc == "Compress"
    assert "ratio" in e.value.details()

    with pytest.raises(ModelInvalidRequestError) as e:
        KvcRunnable(kvc_server.address, method="no_such_method").invoke(
            {"documents": [DOCUMENTS["tunnel"]], "question": "How long?"})
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no_such_method" in str(e.value)


# Haystack


def test_haystack_pipeline_answers_from_bm25_retrieval(kvc_server):
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from kvc_client.integrations.haystack import KvcAnswerGenerator

    store = InMemoryDocumentStore()
    store.write_documents([Document(content=text, id=k) for k, text in DOCUMENTS.items()])
    pipe = Pipeline()
    pipe.add_component("retriever", InMemoryBM25Retriever(store, top_k=2))
    pipe.add_component("kvc", KvcAnswerGenerator(kvc_server.address, ratio=2, max_tokens=32))
    pipe.connect("retriever.documents", "kvc.documents")

    out = pipe.run({"retriever": {"query": QUESTION}, "kvc": {"query": QUESTION}})["kvc"]
    assert len(out["replies"]) == len(out["meta"]) == 1
    meta = out["meta"][0]
    check_answer(out["replies"][0], meta, documents=2, reused=False)

    again = pipe.run({"retriever": {"query": QUESTION}, "kvc": {"query": QUESTION}})["kvc"]
    assert again["meta"][0]["cache_hit"] is True and again["meta"][0]["document_cache_hits"] == 0
    assert again["replies"] == out["replies"]

    # The component survives the round trip through a serialized pipeline (Haystack loads classes only from
    # the modules it is told to trust).
    restored = Pipeline.from_dict(pipe.to_dict(), allowed_modules=["kvc_client.integrations.haystack"])
    assert restored.get_component("kvc").settings == {"ratio": 2, "max_tokens": 32}


def test_haystack_errors_are_component_errors_with_the_grpc_code(kvc_server):
    from haystack import Document, Pipeline
    from haystack.core.errors import ComponentError, PipelineRuntimeError

    from kvc_client.integrations.haystack import KvcAnswerGenerator, KvcComponentError

    docs = [Document(content=DOCUMENTS["tunnel"])]
    with pytest.raises(ComponentError) as e:
        KvcAnswerGenerator(kvc_server.address, ratio=0.5).run(documents=docs, query="How long is it?")
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE

    pipe = Pipeline()
    pipe.add_component("kvc", KvcAnswerGenerator(kvc_server.address, method="no_such_method"))
    with pytest.raises(PipelineRuntimeError) as e:
        pipe.run({"kvc": {"documents": docs, "query": "How long is it?"}})
    assert isinstance(e.value.__cause__, KvcComponentError)
    assert e.value.__cause__.code() == grpc.StatusCode.INVALID_ARGUMENT


# LlamaIndex


def nodes(*keys):
    from llama_index.core.schema import NodeWithScore, TextNode

    return [NodeWithScore(node=TextNode(text=DOCUMENTS[k], id_=k), score=1.0) for k in keys]


def test_llamaindex_query_engine_answers_with_kvc_metadata(kvc_server):
    from llama_index.core import QueryBundle
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.retrievers import BaseRetriever

    from kvc_client.integrations.llamaindex import KvcSynthesizer

    class Fixed(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle):
            return nodes("bridge", "tunnel")

    synthesizer = KvcSynthesizer(kvc_server.address, ratio=2, max_tokens=32, reuse_documents=True)
    engine = RetrieverQueryEngine(Fixed(), response_synthesizer=synthesizer)
    response = engine.query(QUESTION)
    meta = response.metadata["kvc"]
    check_answer(str(response), meta, documents=2, reused=True)
    assert [n.node.node_id for n in response.source_nodes] == ["bridge", "tunnel"]
    assert "bridge" in response.metadata  # LlamaIndex's own per-node metadata stays

    again = synthesizer.synthesize(OTHER_QUESTION, nodes("bridge", "tunnel"))
    assert again.metadata["kvc"]["document_cache_hits"] == 2 and str(again).strip()


def test_llamaindex_errors_carry_the_grpc_code(kvc_server):
    from kvc_client.integrations.llamaindex import KvcSynthesizer, KvcSynthesizerError

    with pytest.raises(KvcSynthesizerError) as e:
        KvcSynthesizer(kvc_server.address, ratio=0.5).synthesize("How long is it?", nodes("tunnel"))
    assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE and e.value.rpc == "Compress"
