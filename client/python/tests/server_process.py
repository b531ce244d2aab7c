"""The kvc-server binary as a child process for tests: started on a free port with a temporary file store,
ready once gRPC health reports SERVING, stopped with SIGTERM.

    with KvcServerProcess(binary, store_dir, model=gguf) as server:
        server.wait_serving()
        with KvcClient(server.address) as kvc: ...
        assert server.terminate() == 0
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import grpc

# grpc.health.v1.Health/Check with service "" (the whole server). The request is then the empty message and
# the reply holds one field, `status` (field 1, varint): SERVING is 1, so b"\x08\x01". Raw bytes keep the
# test free of the grpcio-health-checking package.
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"
_SERVING = b"\x08\x01"


class KvcServerProcess:
    """One kvc-server process. Not thread safe; the log is collected from stderr by a reader thread."""

    def __init__(self, binary: str, store_dir: str, *, model: str | None = None, threads: int = 1,
                 extra_args: tuple[str, ...] = (), metrics_listen: str = ""):
        args = [binary, "--listen", "127.0.0.1:0", "--log-format", "json", "--store", f"file://{store_dir}",
                "--metrics-listen", metrics_listen, "--threads", str(threads), *extra_args]
        if model is not None:
            args += ["--model", model]
        # KVC_* variables of the caller (a token list, another address) must not reconfigure the server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVC_")}
        self._lines: list[str] = []
        self._listening = threading.Event()
        self.port = 0
        self.metrics_port = 0
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env, text=True)
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in self.proc.stderr:
            self._lines.append(line.rstrip("\n"))
            if not self._listening.is_set() and '"listening"' in line:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg") == "listening":
                    self.port = int(entry["port"])
                    self.metrics_port = int(entry.get("metrics_port") or 0)
                    self._listening.set()
        self._listening.set()  # the process ended: wake a waiter, which then sees port 0

    @property
    def log(self) -> str:
        return "\n".join(self._lines)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_listening(self, timeout: float = 60) -> None:
        if not self._listening.wait(timeout) or self.port == 0:
            raise RuntimeError(f"kvc-server did not log a listening port (exit code {self.proc.poll()}):\n{self.log}")

    def wait_serving(self, timeout: float = 600) -> None:
        """Polls grpc.health.v1 for the server as a whole until it is SERVING (the model is loaded)."""
        self.wait_listening()
        deadline = time.monotonic() + timeout
        with grpc.insecure_channel(self.address) as channel:
            check = channel.unary_unary(_HEALTH_CHECK)  # bytes in, bytes out
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"kvc-server exited with code {self.proc.returncode} while loading:\n{self.log}")
                try:
                    if check(b"", timeout=5) == _SERVING:
                        return
                except grpc.RpcError as e:
                    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                        raise
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kvc-server not SERVING after {timeout} s:\n{self.log}")
                time.sleep(0.2)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then the exit code once the server has drained and stopped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)

    def __enter__(self) -> "KvcServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
