import os
import pathlib
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
# Tests run from the source tree: the package directory first on the path.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
REPO = HERE.parent.parent.parent


@pytest.fixture(scope="module")
def kvc_server(tmp_path_factory):
    """kvc-server (KVC_SERVER_BIN) with no --model, so on its embedded default, SERVING on a free port with a
    temporary file store; it must stop cleanly on SIGTERM at the end of the module."""
    from server_process import KvcServerProcess

    binary = os.environ.get("KVC_SERVER_BIN")
    if not binary:
        pytest.skip("KVC_SERVER_BIN is not set")
    with KvcServerProcess(binary, str(tmp_path_factory.mktemp("kvc_store"))) as proc:
        proc.wait_serving()
        yield proc
        assert proc.terminate() == 0, proc.log
