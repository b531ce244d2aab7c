"""kvc's Grafana dashboards, built with grafanalib from the recorded series in deploy/prometheus/rules.py.

Panels query recorded names (rules.recorded("job:kvc_cache_hit_ratio")) rather than repeating an
expression, so each query is written once, in the rules; a renamed rule fails the generation. Raw metrics
appear only where nothing is aggregated (a gauge per instance). deploy/generate.py writes the JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import Dashboard, GridPos, Target, Template, Templating, TimeSeries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "prometheus"))
import rules  # noqa: E402

R = rules.recorded
DATASOURCE = "${datasource}"
WIDTH, HEIGHT = 12, 8  # two panels a row


def _targets(*queries: tuple[str, str]) -> list[Target]:
    return [Target(expr=expr, legendFormat=legend, refId=chr(ord("A") + i), datasource=DATASOURCE)
            for i, (expr, legend) in enumerate(queries)]


def _quantile_targets(prefix: str, legend: str) -> list[tuple[str, str]]:
    return [(R(f"{prefix}:{name}_"), f"{name} {legend}") for name in rules.QUANTILES]


def _panel(i: int, title: str, unit: str, queries: list[tuple[str, str]], description: str = "") -> TimeSeries:
    return TimeSeries(title=title, description=description, unit=unit, dataSource=DATASOURCE,
                      targets=_targets(*queries),
                      gridPos=GridPos(h=HEIGHT, w=WIDTH, x=(i % 2) * WIDTH, y=(i // 2) * HEIGHT))


def _dashboard(uid: str, title: str, description: str, panels: list[tuple]) -> Dashboard:
    datasource = Template(name="datasource", label="Prometheus", query="prometheus", type="datasource", default="")
    return Dashboard(
        uid=uid, title=title, description=description, tags=["kvc"], timezone="utc", refresh="30s",
        templating=Templating(list=[datasource]),
        panels=[_panel(i, *p) for i, p in enumerate(panels)],
    ).auto_panel_ids()


def overview() -> Dashboard:
    return _dashboard("kvc-overview", "kvc: overview", "Calls, latency, the device queue and throughput.", [
        ("Requests by RPC and code", "reqps", [(R("job_rpc_code:kvc_requests:rate"), "{{job}} {{rpc}} {{code}}")]),
        ("Calls not OK (share of the RPC's calls)", "percentunit",
         [(f'{R("job_rpc_code:kvc_requests:ratio_rate")}{{code!="OK"}}', "{{job}} {{rpc}} {{code}}")],
         f"Server-side failures ({rules.SERVER_ERROR_CODES}) page through KvcErrorRatioHigh; the rest are "
         "callers' mistakes."),
        ("Latency per RPC", "s", _quantile_targets("job_rpc:kvc_request_seconds", "{{job}} {{rpc}}")),
        ("Latency per phase of the model work", "s",
         _quantile_targets("job_work_phase:kvc_phase_seconds", "{{job}} {{work}} {{phase}}"),
         "compress: tokenize, queue, prefill, compress, serialize, store; generate: queue, load, compose, "
         "prefill, decode."),
        ("Device queue saturation (queued / --max-queue-tokens)", "percentunit",
         [(R("instance:kvc_queue_saturation:ratio"), "{{job}} {{instance}}")],
         "Past 100% new calls get RESOURCE_EXHAUSTED; the HPA scales on queued tokens."),
        ("Queued tokens and time in the queue", "short",
         [("kvc_queued_tokens", "queued tokens {{instance}}"),
          (R("job:kvc_queue_seconds:p99_"), "p99 queue seconds {{job}}")]),
        ("Compression ratio (tokens in / kept)", "short",
         [(R("job:kvc_compression_ratio:tokens_rate"), "all tokens {{job}}"),
          *_quantile_targets("job:kvc_compression_ratio", "per call {{job}}")]),
        ("Tokens per second", "short",
         [(R("job:kvc_prefill_tokens:rate"), "prefilled {{job}}"),
          (R("job:kvc_generated_tokens:rate"), "generated {{job}}")]),
        ("Time to first token", "s", _quantile_targets("job:kvc_time_to_first_token_seconds", "{{job}}")),
        ("Calls in flight", "short", [("sum by (job) (kvc_inflight_requests)", "{{job}}")]),
    ])


def store() -> Dashboard:
    return _dashboard("kvc-store", "kvc: cache store", "The cache store as kvc sees it: traffic, hits, "
                      "evictions and failures (Redis's own view comes from a redis exporter).", [
        ("Store bytes per second by operation", "Bps", [(R("job_op:kvc_store_bytes:rate"), "{{job}} {{op}}")]),
        ("Cache hit ratio of Compress", "percentunit",
         [(R("job:kvc_cache_hit_ratio:rate"), "{{job}}")],
         "A repeated request (same model, spec, context and query) is a hit and costs no compute."),
        ("Cache lookups per second", "ops", [(R("job:kvc_cache_lookups:rate"), "{{job}}")]),
        ("Store latency", "s", _quantile_targets("job_op_backend:kvc_store_seconds", "{{job}} {{op}} {{backend}}")),
        ("Evictions (file store capacity)", "ops",
         [(R("job_backend:kvc_store_evictions:rate"), "entries {{job}} {{backend}}")]),
        ("Evicted bytes per second", "Bps", [(R("job_backend:kvc_store_evicted_bytes:rate"), "{{job}} {{backend}}")]),
        ("Store errors per second (Redis or file)", "ops",
         [(R("job_op_backend:kvc_store_errors:rate"), "{{job}} {{op}} {{backend}}")],
         "Failures of the store itself; absent ids and malformed ids are not counted."),
    ])


DASHBOARDS = {"kvc-overview.json": overview, "kvc-store.json": store}


def render(build) -> str:
    return json.dumps(build().to_json_data(), cls=DashboardEncoder, sort_keys=True, indent=2) + "\n"
