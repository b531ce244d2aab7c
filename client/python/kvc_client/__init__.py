"""kvc_client: a Python client of the kvc service and a reader of its .kvc cache files.

- KvcClient: compress, generate, get_cache, model_info over gRPC (needs the generated stubs: run
  client/python/generate_stubs.py once in a source checkout; pip install generates them).
- read_kvc: a .kvc file as numpy arrays per (layer, head), every checksum verified.
- load_cache / generate_greedy: a .kvc file as a transformers DynamicCache plus the position at which
  decoding continues, and greedy decoding from it (torch and transformers are imported only there).

The gRPC names are imported lazily, so read_kvc works without grpc or the stubs.
"""
from .kvc_format import KvcFile, KvcFormatError, KvcHeader, read_header, read_kvc
from .hf_cache import generate_greedy, load_cache

__version__ = "0.1.0"

_CLIENT_NAMES = ("KvcClient", "Generation", "Generations", "GenerationResult", "CacheIntegrityError")

__all__ = ["KvcFile", "KvcFormatError", "KvcHeader", "read_header", "read_kvc", "generate_greedy", "load_cache",
           *_CLIENT_NAMES]


def __getattr__(name):
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'kvc_client' has no attribute {name!r}")
