"""kvc as the answering step of RAG pipelines written with LangChain, Haystack or LlamaIndex.

Each module needs its library, installed through the client's extra of the same name:

- kvc_client.integrations.langchain: KvcRunnable, a Runnable from {"documents", "question"} to an AIMessage
  (`pip install 'client/python[langchain]'`).
- kvc_client.integrations.haystack: KvcAnswerGenerator, a component with run(documents, query) -> replies,
  meta (`[haystack]`).
- kvc_client.integrations.llamaindex: KvcSynthesizer, a response synthesizer for query engines
  (`[llamaindex]`).

They share KvcAnswerer (kvc_client.integrations.core), which needs none of the libraries: the retrieved
documents go to kvc as separate documents, the question compresses them (Compress) and Generate decodes the
answer; with reuse_documents=True each document first gets a full KV cache of its own (Precompute FULL,
content-addressed, so a document stored before is a hit and is not prefilled again) and the question selects
from those. Errors of the server become KvcError, a grpc.RpcError whose code() is the gRPC status; each
module raises a subclass that is also its library's own exception type.
"""
from .core import KvcAnswer, KvcAnswerer, KvcError

__all__ = ["KvcAnswer", "KvcAnswerer", "KvcError"]
