"""The two real servers of the live test as child processes: kvc-server (ports read from its JSON
"listening" log line, ready once gRPC health says SERVING) and prometheus (ready once /-/ready answers).
Every wait polls up to a deadline; nothing sleeps a fixed time."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


def wait_until(what: str, ready, deadline_s: float, log=lambda: ""):
    """Polls `ready()` (truthy when done) every 0.2 s; fails naming `what` and the log at the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        value = ready()
        if value:
            return value
        if time.monotonic() > end:
            raise TimeoutError(f"{what} not within {deadline_s} s\n{log()}")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A child process with its output in a file; killed (and reaped) by close()."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None):
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class KvcServer(Child):
    def __init__(self, binary: str, model: str, store: Path, log_path: Path, extra: tuple[str, ...] = ()):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KVC_")}
        super().__init__([binary, "--model", model, "--store", f"file://{store}", "--listen", "127.0.0.1:0",
                          "--metrics-listen", "127.0.0.1:0", "--log-format", "json", "--threads", "1", *extra],
                         log_path, env={**env, "OMP_WAIT_POLICY": "passive"})
        listening = wait_until("kvc-server's listening line", self._listening, 120, self.log)
        self.port, self.metrics_port = listening["port"], listening["metrics_port"]

    def _listening(self):
        if not self.alive():
            raise RuntimeError(f"kvc-server exited with {self.proc.returncode}:\n{self.log()}")
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "listening":
                return entry
        return None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class Prometheus(Child):
    def __init__(self, binary: str, config: Path, data: Path, log_path: Path):
        self.port = free_port()
        super().__init__([binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                          f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], log_path)
        wait_until("prometheus ready", self._ready, 120, self.log)

    def _ready(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def query(self, expr: str) -> list[dict]:
        """The instant vector `expr` evaluates to now, through the HTTP API."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]["result"]
