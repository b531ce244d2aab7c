"""kvc's Prometheus rules as data: the recording rules every dashboard and alert reads, and the alerts.

deploy/generate.py writes them out as deploy/prometheus/kvc-rules.yaml (for a plain Prometheus and for
promtool) and as the PrometheusRule in deploy/k8s/components/monitoring. Dashboards
(deploy/grafana/dashboards.py) query the recorded names defined here rather than repeating the
expressions, so each query is written once.

Every recorded series keeps `job` (one per role's Service in Kubernetes) so that the fleet's roles can be
told apart; per-instance series keep `instance` too.
"""
from __future__ import annotations

# The window of every rate in the recorded series; dashboards and alerts inherit it.
WINDOW = "5m"
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}

# gRPC codes that say the service failed the caller (as opposed to the caller's own mistake: bad input,
# an unknown id, a wrong model, a missing token, its own cancel).
SERVER_ERROR_CODES = "INTERNAL|UNKNOWN|DATA_LOSS|UNAVAILABLE|RESOURCE_EXHAUSTED|DEADLINE_EXCEEDED"

# Where each alert is explained: the `docs` annotation is this plus the alert's name in lower case.
DOCS_BASE = "docs/deploy.md#"


def _rate(metric: str, by: str) -> str:
    return f"sum by ({by}) (rate({metric}[{WINDOW}]))"


def _quantiles(record_prefix: str, histogram: str, by: str) -> list[tuple[str, str]]:
    """One recording rule per quantile of `histogram`, grouped by `by` (and le)."""
    return [(f"{record_prefix}:{name}_{WINDOW}",
             f"histogram_quantile({q}, sum by ({by}, le) (rate({histogram}_bucket[{WINDOW}])))")
            for name, q in QUANTILES.items()]


# (record, expr), in evaluation order: a rule may use the ones before it.
RECORDING: list[tuple[str, str]] = [
    # Requests and errors.
    (f"job_rpc_code:kvc_requests:rate{WINDOW}", _rate("kvc_requests_total", "job, rpc, code")),
    (f"job_rpc:kvc_requests:rate{WINDOW}", _rate("kvc_requests_total", "job, rpc")),
    (f"job_rpc_code:kvc_requests:ratio_rate{WINDOW}",
     f"job_rpc_code:kvc_requests:rate{WINDOW} / ignoring (code) group_left job_rpc:kvc_requests:rate{WINDOW}"),
    # Latency: whole RPCs, each phase of the model work, the queue and the first generated token.
    *_quantiles("job_rpc:kvc_request_seconds", "kvc_request_seconds", "job, rpc"),
    *_quantiles("job_work_phase:kvc_phase_seconds", "kvc_phase_seconds", "job, work, phase"),
    *_quantiles("job:kvc_queue_seconds", "kvc_queue_seconds", "job"),
    *_quantiles("job:kvc_time_to_first_token_seconds", "kvc_time_to_first_token_seconds", "job"),
    # The device queue: admission counts queued tokens against --max-queue-tokens.
    ("instance:kvc_queue_saturation:ratio", "kvc_queued_tokens / kvc_queue_capacity_tokens"),
    # Throughput and compression.
    (f"job:kvc_prefill_tokens:rate{WINDOW}", _rate("kvc_prefill_tokens_total", "job")),
    (f"job:kvc_kept_tokens:rate{WINDOW}", _rate("kvc_kept_tokens_total", "job")),
    (f"job:kvc_generated_tokens:rate{WINDOW}", _rate("kvc_generated_tokens_total", "job")),
    # Tokens in over tokens kept across all compressions (weighted by size, unlike the histogram's median).
    (f"job:kvc_compression_ratio:tokens_rate{WINDOW}",
     f"job:kvc_prefill_tokens:rate{WINDOW} / job:kvc_kept_tokens:rate{WINDOW}"),
    *_quantiles("job:kvc_compression_ratio", "kvc_compression_ratio", "job"),
    # The cache store: lookups, bytes, latency, evictions, failures.
    (f"job:kvc_cache_lookups:rate{WINDOW}",
     f"{_rate('kvc_cache_hits_total', 'job')} + {_rate('kvc_cache_misses_total', 'job')}"),
    (f"job:kvc_cache_hit_ratio:rate{WINDOW}",
     f"{_rate('kvc_cache_hits_total', 'job')} / job:kvc_cache_lookups:rate{WINDOW}"),
    (f"job_op:kvc_store_bytes:rate{WINDOW}", _rate("kvc_store_bytes", "job, op")),
    *_quantiles("job_op_backend:kvc_store_seconds", "kvc_store_seconds", "job, op, backend"),
    (f"job_backend:kvc_store_evictions:rate{WINDOW}", _rate("kvc_store_evictions_total", "job, backend")),
    (f"job_backend:kvc_store_evicted_bytes:rate{WINDOW}", _rate("kvc_store_evicted_bytes_total", "job, backend")),
    (f"job_op_backend:kvc_store_errors:rate{WINDOW}", _rate("kvc_store_errors_total", "job, op, backend")),
]


def recorded(name_prefix: str) -> str:
    """The one recorded name that starts with `name_prefix` (e.g. "job:kvc_cache_hit_ratio"); fails loudly
    so that a renamed rule breaks the dashboards' generation rather than leaving a panel empty."""
    names = [r for r, _ in RECORDING if r.startswith(name_prefix)]
    if len(names) != 1:
        raise KeyError(f"{name_prefix!r} matches {names}")
    return names[0]


ALERTS: list[dict] = [
    {
        "alert": "KvcErrorRatioHigh",
        "expr": f'job_rpc_code:kvc_requests:ratio_rate{WINDOW}{{code=~"{SERVER_ERROR_CODES}"}} > 0.05',
        "for": "10m",
        "severity": "critical",
        "summary": "{{ $labels.job }} {{ $labels.rpc }}: {{ $value | humanizePercentage }} of calls end "
                   "{{ $labels.code }}",
        "runbook": "Read the code: UNAVAILABLE means draining, loading or a store outage (see KvcStoreErrors); "
                   "RESOURCE_EXHAUSTED a full queue or device memory (add workers or lower "
                   "--max-queue-tokens); INTERNAL or DATA_LOSS a bug or a corrupt cache (grep the json logs "
                   "for the code and its request_id).",
    },
    {
        "alert": "KvcLatencyP99High",
        # Precompute is batch work and Generate streams for as long as it decodes: both are watched
        # elsewhere (the job's progress, time to first token).
        "expr": f'job_rpc:kvc_request_seconds:p99_{WINDOW}{{rpc!~"Compressor.Precompute|Generator.Generate"}} > 30',
        "for": "10m",
        "severity": "warning",
        "summary": "{{ $labels.job }} {{ $labels.rpc }}: p99 latency {{ $value | humanizeDuration }}",
        "runbook": "Look at the overview's per-phase latency: queue time means too few workers (scale out), "
                   "prefill time means longer documents or a slower device, store time a slow Redis.",
    },
    {
        "alert": "KvcTimeToFirstTokenHigh",
        "expr": f"job:kvc_time_to_first_token_seconds:p99_{WINDOW} > 10",
        "for": "10m",
        "severity": "warning",
        "summary": "{{ $labels.job }}: p99 time to first token {{ $value | humanizeDuration }}",
        "runbook": "Generate waits in the device queue or loads large caches: check queue saturation and the "
                   "generate phase panel (load, compose, prefill); add generate workers.",
    },
    {
        "alert": "KvcQueueSaturated",
        "expr": "instance:kvc_queue_saturation:ratio > 0.8",
        "for": "5m",
        "severity": "warning",
        "summary": "{{ $labels.instance }}: the device queue holds {{ $value | humanizePercentage }} of "
                   "--max-queue-tokens",
        "runbook": "Past 100% new calls get RESOURCE_EXHAUSTED. The autoscaler should be adding workers: check "
                   "the HPA (kubectl describe hpa) and whether GPUs are left to schedule them on.",
    },
    {
        "alert": "KvcStoreErrors",
        "expr": f"job_op_backend:kvc_store_errors:rate{WINDOW} > 0",
        "for": "5m",
        "severity": "critical",
        "summary": "{{ $labels.job }}: {{ $labels.backend }} store {{ $labels.op }} failing "
                   "({{ $value | printf \"%.2f\" }}/s)",
        "runbook": "kvc cannot reach or write its store. For redis: kubectl get pods -l "
                   "app.kubernetes.io/name=redis, its logs, memory (maxmemory) and the password in the "
                   "kvc-store Secret; for file: the volume is full or read-only.",
    },
    {
        "alert": "KvcCacheHitRatioCollapse",
        # Against the same job's ratio over the hour before, so that a fleet with a low but steady ratio
        # stays quiet; and only with enough lookups for the ratio to mean something.
        "expr": f"job:kvc_cache_hit_ratio:rate{WINDOW} < 0.5 * avg_over_time(job:kvc_cache_hit_ratio:rate{WINDOW}[1h] "
                f"offset 1h) and job:kvc_cache_lookups:rate{WINDOW} > 0.05",
        "for": "15m",
        "severity": "warning",
        "summary": "{{ $labels.job }}: cache hit ratio fell to {{ $value | humanizePercentage }}, under half "
                   "of the hour before",
        "runbook": "Caches are gone or ids changed: a store flush or eviction wave (store dashboard, "
                   "evictions), a new model or dtype (kvc_model_info; ids include the fingerprint), or clients "
                   "sending a new spec or system prompt. Rerun the precompute job after a model change.",
    },
    {
        "alert": "KvcWorkerDown",
        "expr": 'up{job=~"kvc.*"} == 0',
        "for": "5m",
        "severity": "critical",
        "summary": "{{ $labels.job }} {{ $labels.instance }} has not answered a scrape for 5 minutes",
        "runbook": "kubectl get pods -l app.kubernetes.io/name=kvc-server; describe the pod (OOMKilled, "
                   "ImagePullBackOff, a GPU not allocatable) and read its last logs (kubectl logs --previous).",
    },
    {
        "alert": "KvcPrecomputeJobFailed",
        # kube-state-metrics' view of the Job; the job's own log has the failing documents.
        "expr": 'kube_job_status_failed{job_name=~"kvc-precompute.*"} > 0',
        "for": "0m",
        "severity": "warning",
        "summary": "precompute job {{ $labels.job_name }}: {{ $value }} failed pods",
        "runbook": "kubectl logs job/{{ $labels.job_name }} shows each failed document with its code. Fix the "
                   "cause and rerun the job: documents already stored come back as hits, with no compute.",
    },
]


def rule_groups() -> list[dict]:
    """The rules as Prometheus rule groups (the same shape a PrometheusRule's spec.groups takes)."""
    alerts = []
    for a in ALERTS:
        alerts.append({
            "alert": a["alert"],
            "expr": a["expr"],
            "for": a["for"],
            "labels": {"severity": a["severity"]},
            "annotations": {
                "summary": a["summary"],
                "runbook": a["runbook"],
                "docs": DOCS_BASE + a["alert"].lower(),
            },
        })
    return [
        {"name": "kvc.recording", "interval": "30s",
         "rules": [{"record": r, "expr": e} for r, e in RECORDING]},
        {"name": "kvc.alerts", "rules": alerts},
    ]
