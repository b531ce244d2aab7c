"""The production precompute Job's own script, run as its pods would run it (one process per completion
index, SHARDS of them) against a real kvc-server with TLS: every document is computed exactly once across
the shards, each shard logs its progress and a JSON summary, and a rerun is all hits (nothing computed)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

from deploy_support import objects, run
from processes import KvcServer


def _job() -> dict:
    return next(o for o in objects("production") if o["kind"] == "Job" and o["metadata"]["name"] == "kvc-precompute")


def _documents() -> str:
    return next(o for o in objects("production") if o["kind"] == "ConfigMap"
                and o["metadata"]["name"].startswith("kvc-precompute-documents"))["data"]["documents.jsonl"]


def _self_signed(tls: pathlib.Path, name: str) -> None:
    tls.mkdir()
    made = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(tls / "tls.key"), "-out", str(tls / "tls.crt")])
    assert made.returncode == 0, made.stderr
    (tls / "ca.crt").write_bytes((tls / "tls.crt").read_bytes())


def _run_shards(script: str, env: dict, shards: int, work: pathlib.Path) -> list[dict]:
    """Each index as its own pod: a fresh /tmp, the index in JOB_COMPLETION_INDEX. Returns the summaries."""
    summaries = []
    for index in range(shards):
        pod_tmp = work / f"pod-{index}-{len(list(work.iterdir()))}"
        pod_tmp.mkdir()
        pod_script = script.replace("@POD_TMP@/", f"{pod_tmp}/")
        result = subprocess.run(["/bin/sh", "-c", pod_script], capture_output=True, text=True, timeout=300,
                                env={**env, "JOB_COMPLETION_INDEX": str(index)})
        assert result.returncode == 0, f"shard {index}:\n{result.stdout}\n{result.stderr}"
        assert f"precompute: shard {index} of {shards}:" in result.stdout, result.stdout
        summaries.append(json.loads(result.stderr.strip().splitlines()[-1]))
        summaries[-1]["results"] = [json.loads(line) for line in (pod_tmp / "results.jsonl").read_text().splitlines()]
    return summaries


def test_the_job_shards_the_documents_and_a_rerun_is_all_hits(tmp_path):
    job = _job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/bin/sh", "-c"]
    shards = int(next(e["value"] for e in container["env"] if e["name"] == "SHARDS"))
    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "documents.jsonl").write_text(_documents())
    ids = [json.loads(line)["id"] for line in _documents().splitlines() if line.strip()]
    tls = tmp_path / "tls"
    _self_signed(tls, "kvc-compress")  # the name the job's --tls-server-name asks for

    server = KvcServer(os.environ["KVC_SERVER_BIN"], os.environ["KVC_TEST_MODEL"], tmp_path / "store",
                       tmp_path / "kvc-server.log",
                       extra=("--roles", "compress", "--tls-cert", str(tls / "tls.crt"),
                              "--tls-key", str(tls / "tls.key")))
    try:
        cli = pathlib.Path(os.environ["KVC_CLI"])
        env = {"PATH": f"{cli.parent}:{os.environ['PATH']}", "SHARDS": str(shards),
               "KVC_SERVER": server.address}
        ready = run([str(cli), "--server", server.address, "--tls-ca", str(tls / "ca.crt"), "--tls-server-name",
                     "kvc-compress", "health", "--service", "compress", "--wait", "300"])
        assert ready.returncode == 0, ready.stdout + ready.stderr + server.log()
        # The pod's paths, here: the documents volume, the TLS Secret, an emptyDir /tmp per pod.
        # (/tmp first: the test's own directories lie under /tmp too.)
        script = container["args"][0].replace("/tmp/", "@POD_TMP@/")
        script = script.replace("/documents/", f"{docs}/").replace("/etc/kvc/tls/", f"{tls}/")
        work = tmp_path / "pods"
        work.mkdir()

        first = _run_shards(script, env, shards, work)
        shard_ids = [[r["id"] for r in s["results"]] for s in first]
        assert sorted(i for ids_ in shard_ids for i in ids_) == sorted(ids), shard_ids  # each document once
        assert sum(s["computed"] for s in first) == len(ids) and all(s["failed"] == 0 for s in first), first

        again = _run_shards(script, env, shards, work)
        assert sum(s["hits"] for s in again) == len(ids) and sum(s["computed"] for s in again) == 0, again
        assert [sorted(r["cache_id"] for r in s["results"]) for s in again] == \
            [sorted(r["cache_id"] for r in s["results"]) for s in first]
        assert server.stop() == 0, server.log()
    finally:
        server.close()
