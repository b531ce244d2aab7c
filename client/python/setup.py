"""Generates the gRPC stubs into kvc_client/_proto before the package is built (pip install client/python)."""
import pathlib
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = pathlib.Path(__file__).resolve().parent


class BuildWithStubs(build_py):
    def run(self):
        proto = HERE.parent.parent / "proto"
        if (proto / "kvc" / "v1").is_dir():
            sys.path.insert(0, str(HERE))
            import generate_stubs

            generate_stubs.generate(proto, HERE / "kvc_client")
        elif not (HERE / "kvc_client" / "_proto" / "kvc" / "v1" / "compressor_pb2.py").exists():
            raise RuntimeError(f"no {proto} to generate the stubs from, and none were generated before")
        super().run()


setup(cmdclass={"build_py": BuildWithStubs})
