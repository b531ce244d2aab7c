"""The dashboards and rules name metrics that exist: a real kvc-server (the tiny_chat test model, a file
store) serves Compress, Generate and CacheService calls while a real Prometheus scrapes its /metrics and
evaluates kvc's recording rules; then every recording rule and every dashboard panel's expression is
asked of Prometheus's HTTP API, and each must return at least one series."""
from __future__ import annotations

import json
import os
import shutil
import sys

import grpc
import pytest
import yaml

from deploy_support import DEPLOY, REPO, run, tool
from processes import KvcServer, Prometheus, wait_until

sys.path.insert(0, str(REPO / "client" / "python"))
from kvc_client import KvcClient  # noqa: E402

DOC_TOKENS = 200  # long enough for a real compression on tiny_chat, short enough to be quick on a CPU


def _document(seed: int) -> dict:
    """A document of DOC_TOKENS token ids: every one the same length, so every cache has the same size."""
    return {"token_ids": [10 + (seed * 7 + i * 13) % 200 for i in range(DOC_TOKENS)]}


def _compress(client: KvcClient, seed: int):
    return client.compress([_document(seed)], "What is it about?", method="knorm", ratio=2, timeout=120)


def _panel_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted((DEPLOY / "grafana").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def _recording_rules() -> list[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "kvc-rules.yaml").read_text())["groups"]
    return [r["record"] for g in groups for r in g["rules"] if "record" in r]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def cache_bytes(paths):
    """The size of one compressed document's cache, measured on a server of its own, so that the scraped
    server's store can be given room for one cache and no more (its second compression evicts)."""
    server = KvcServer(os.environ["KVC_SERVER_BIN"], os.environ["KVC_TEST_MODEL"], paths / "measure-store",
                       paths / "measure.log")
    try:
        with KvcClient(server.address) as client:
            client_wait_serving(client)
            size = _compress(client, seed=0).info.bytes
        assert server.stop() == 0, server.log()
        return size
    finally:
        server.close()


def client_wait_serving(client: KvcClient) -> None:
    def ready():
        try:
            client.model_info(timeout=5)
            return True
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:  # loading the model
                raise
            return False
    wait_until("kvc-server serving", ready, 300)


def test_every_recording_rule_and_dashboard_panel_returns_series(paths, cache_bytes):
    server = KvcServer(os.environ["KVC_SERVER_BIN"], os.environ["KVC_TEST_MODEL"], paths / "store",
                       paths / "kvc-server.log", extra=("--store-capacity-bytes", str(cache_bytes * 3 // 2)))
    prometheus = None
    try:
        # The rules as shipped, evaluated every second instead of every 30 s.
        groups = yaml.safe_load((DEPLOY / "prometheus" / "kvc-rules.yaml").read_text())
        for g in groups["groups"]:
            g["interval"] = "1s"
        (paths / "rules.yaml").write_text(yaml.safe_dump(groups))
        (paths / "prometheus.yml").write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(paths / "rules.yaml")],
            "scrape_configs": [{"job_name": "kvc",
                                "static_configs": [{"targets": [f"127.0.0.1:{server.metrics_port}"]}]}],
        }))
        checked = run([tool("promtool"), "check", "config", "--syntax-only", str(paths / "prometheus.yml")])
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prometheus = Prometheus(tool("prometheus"), paths / "prometheus.yml", paths / "tsdb", paths / "prometheus.log")

        with KvcClient(server.address) as client:
            client_wait_serving(client)
            first = _compress(client, seed=1)
            assert not first.cache_hit
            assert _compress(client, seed=1).cache_hit  # the same request again: a hit
            second = _compress(client, seed=2)  # no room for two: evicts the first
            answer = client.generate_text(second.cache_id, "Answer:", max_tokens=4, timeout=120)
            assert answer.usage.generated_tokens > 0
            assert len(client.get_cache(second.cache_id)) == second.info.bytes
            with pytest.raises(grpc.RpcError) as absent:
                client.generate_text("0" * 64, "Answer:", max_tokens=4, timeout=60)
            assert absent.value.code() == grpc.StatusCode.NOT_FOUND

        queries = [(f"recording rule {name}", name) for name in _recording_rules()] + _panel_expressions()
        assert len(queries) > 30

        missing = queries

        def all_present() -> bool:
            # Each series appears once it has been scraped twice and the rules have run over it.
            nonlocal missing
            missing = [(what, expr) for what, expr in missing if not prometheus.query(expr)]
            return not missing
        try:
            wait_until("every query returning series", all_present, deadline_s=180)
        except TimeoutError:
            pytest.fail("no series for:\n" + "\n".join(f"  {what}: {expr}" for what, expr in missing))
        evictions = prometheus.query('kvc_store_evictions_total{backend="file"}')
        assert evictions and float(evictions[0]["value"][1]) >= 1, evictions
        assert server.stop() == 0, server.log()
    finally:
        server.close()
        if prometheus is not None:
            prometheus.close()
        shutil.rmtree(paths / "tsdb", ignore_errors=True)
