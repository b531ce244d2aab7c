"""Packaging: the stubs import each other relatively, and the heavy modules load only when needed."""
import pathlib
import subprocess
import sys

import kvc_client

PACKAGE = pathlib.Path(kvc_client.__file__).resolve().parent


def test_generated_stubs_import_their_siblings_relatively():
    modules = sorted((PACKAGE / "_proto" / "kvc" / "v1").glob("*_pb2*.py"))
    assert len(modules) == 8
    for m in modules:
        assert "from kvc.v1 import" not in m.read_text(), m
    from kvc_client._proto.kvc.v1 import compressor_pb2

    assert compressor_pb2.DESCRIPTOR.name == "kvc/v1/compressor.proto"


def test_importing_the_package_loads_neither_torch_nor_grpc():
    code = ("import sys, kvc_client; kvc_client.read_kvc; "
            "print(sorted(m for m in ('torch', 'transformers', 'grpc') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_client_and_the_integrations_core_load_no_orchestration_library():
    libraries = ("langchain_core", "haystack", "llama_index")
    code = ("import sys, kvc_client, kvc_client.integrations; kvc_client.KvcClient; "
            f"print(sorted(m for m in {libraries!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
