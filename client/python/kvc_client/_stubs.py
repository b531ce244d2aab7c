"""The generated gRPC modules (kvc_client/_proto, made by generate_stubs.py or at pip install time)."""
try:
    from ._proto.kvc.v1 import (cache_pb2, cache_pb2_grpc, common_pb2, compressor_pb2, compressor_pb2_grpc,
                                generator_pb2, generator_pb2_grpc)
except ImportError as e:  # a source checkout where the generator has not run yet
    raise ImportError("kvc_client: the gRPC stubs are missing; run `python client/python/generate_stubs.py` "
                      "(pip install client/python generates them too)") from e

__all__ = ["cache_pb2", "cache_pb2_grpc", "common_pb2", "compressor_pb2", "compressor_pb2_grpc", "generator_pb2",
           "generator_pb2_grpc"]
