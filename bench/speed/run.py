#!/usr/bin/env python3
"""Compression speed, side by side in one run: kvc Finch vs kvpress FinchPress on the same model, dtype,
device and token ids, plus kvc's focus (the default method), kvc's plain prefill (method none) and
transformers' plain prefill.

  bench/speed/run.py [--data ../shared/eval/dev.jsonl] [--tokens 4096] [--ratio 8] [--threads 2] [--repeats 3]
                     [--device cpu|cuda] [--dtype float32|bfloat16|float16] [--kvc-weights float,int8]
                     [--out bench/results/speed-cpu.md]

The record is the dev record whose prompt is closest to --tokens tokens. Targets (issue #4): kvc Finch takes
<= 0.67x the time of kvpress FinchPress and adds <= 15% over kvc's plain prefill; focus takes <= 1.15x Finch's time. On CUDA every timed run
ends with a device synchronize; the default output is then bench/results/speed-gpu.md and the dtype bfloat16.
On CPU kvc's Finch and plain prefill are also timed with int8 weights (--weights int8: the projections on the
int8 GEMM), next to the float rows that compare with kvpress at equal arithmetic.
"""
import argparse
import datetime
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "quality"))
sys.path.insert(0, str(ROOT / "bench"))
from bench_env import build_binary, cpu_model, loadavg  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "eval" / "dev.jsonl"))
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--ratio", type=float, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default=None, choices=("float32", "bfloat16", "float16"),
                    help="model dtype in both engines (default: float32 on CPU, bfloat16 on CUDA)")
    ap.add_argument("--out", default=None, help="default bench/results/speed-cpu.md (speed-gpu.md on CUDA)")
    ap.add_argument("--exact", action="store_true",
                    help="the shortest record of at least --tokens tokens, its context cut so that context + "
                         "query is exactly --tokens (the dev set has 27.4K and 37.2K records, none near 32K)")
    ap.add_argument("--kvc-weights", default=None,
                    help="comma-separated weight formats for kvc's rows, float first (default: float,int8 on CPU, "
                         "float on CUDA); kvpress and transformers run the model dtype's weights")
    ap.add_argument("--profile", default=None,
                    help="directory: kvc's float-weight methods run once more under LibTorch's profiler "
                         "(kvc-bench-compress --profile); their op tables are appended to the report")
    a = ap.parse_args()
    on_gpu = a.device.startswith("cuda")
    a.kvc_weights = (a.kvc_weights or ("float" if on_gpu else "float,int8")).split(",")
    if a.kvc_weights[0] != "float":
        sys.exit("--kvc-weights must start with float (the rows compared with kvpress at equal arithmetic)")
    a.dtype = a.dtype or ("bfloat16" if on_gpu else "float32")
    a.out = a.out or str(ROOT / "bench" / "results" / ("speed-gpu.md" if on_gpu else "speed-cpu.md"))

    ids = subprocess.run([build_binary("kvc-eval", ROOT), "--data", a.data, "--tokenize-only"], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    recs = [json.loads(l) for l in ids]
    size = lambda r: len(r["context_ids"]) + len(r["suffix_ids"])
    if a.exact:
        longer = [r for r in recs if size(r) >= a.tokens]
        if not longer:
            sys.exit(f"no record in {a.data} has {a.tokens} tokens")
        rec = min(longer, key=size)
        rec["context_ids"] = rec["context_ids"][:a.tokens - len(rec["suffix_ids"])]
    else:
        rec = min(recs, key=lambda r: abs(size(r) - a.tokens))
    ctx, suffix = rec["context_ids"], rec["suffix_ids"]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(json.dumps(rec) + "\n")
        ids_path = f.name

    print(f"[speed] record {rec['id']}: {len(ctx)} context + {len(suffix)} query tokens", file=sys.stderr)
    # kvc's rows per weight format: the model dtype's (float) first, then the others with Finch and plain prefill.
    by_weights = {}
    for w in a.kvc_weights:
        out = subprocess.run([build_binary("kvc-bench-compress", ROOT), "--ids", ids_path,
                              "--methods", "none,finch,focus" if w == "float" else "none,finch",
                              "--ratio", str(a.ratio), "--threads", str(a.threads), "--repeats", str(a.repeats),
                              "--device", a.device, "--dtype", a.dtype, "--weights", w]
                             + (["--profile", a.profile] if a.profile and w == "float" else []),
                             check=True, capture_output=True, text=True).stdout
        by_weights[w] = {d["method"]: d for d in map(json.loads, out.splitlines())}
        print(f"[speed] kvc {w} weights: {by_weights[w]}", file=sys.stderr)
    ours = by_weights["float"]

    import torch
    from kvpress.presses.base_press import BasePress
    from kvpress_eval import load_model, make_press, sync
    from transformers import DynamicCache

    torch.set_num_threads(a.threads)
    _, model = load_model(None, a.device, getattr(torch, a.dtype))
    dev = model.device

    def timed(fn):
        fn()  # warm-up
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            sync(model)
            times.append(time.perf_counter() - t0)
        return times

    @torch.no_grad()
    def kvpress_finch():
        press = make_press("finch", a.ratio, len(suffix))
        cache = DynamicCache()
        with BasePress.__call__(press, model):
            model.model(input_ids=torch.tensor([ctx + suffix], device=dev), past_key_values=cache)

    @torch.no_grad()
    def hf_prefill():
        model.model(input_ids=torch.tensor([ctx], device=dev), past_key_values=DynamicCache())

    theirs = {"kvpress finch": timed(kvpress_finch), "transformers prefill": timed(hf_prefill)}
    med = {k: statistics.median(v) for k, v in theirs.items()}
    f_ours, p_ours = ours["finch"]["median_s"], ours["none"]["median_s"]
    cpu = cpu_model()
    where = f"CPU: {cpu}; {a.threads} threads"
    if on_gpu:
        where = f"GPU: {torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda}); host CPU: {cpu}"
    rows = [
        ("kvc finch", f_ours, ours["finch"]["times_s"]),
        ("kvc focus (the default method)", ours["focus"]["median_s"], ours["focus"]["times_s"]),
        ("kvpress FinchPress", med["kvpress finch"], theirs["kvpress finch"]),
        ("kvc plain prefill (none)", p_ours, ours["none"]["times_s"]),
        ("transformers plain prefill", med["transformers prefill"], theirs["transformers prefill"]),
    ]
    for w in a.kvc_weights[1:]:
        rows += [(f"kvc finch, {w} weights", by_weights[w]["finch"]["median_s"], by_weights[w]["finch"]["times_s"]),
                 (f"kvc plain prefill (none), {w} weights", by_weights[w]["none"]["median_s"],
                  by_weights[w]["none"]["times_s"])]
    other = "".join(
        f"- kvc Finch with {w} weights / kvpress FinchPress (its float weights): "
        f"**{by_weights[w]['finch']['median_s'] / med['kvpress finch']:.2f}x**; / kvc Finch with float weights: "
        f"{by_weights[w]['finch']['median_s'] / f_ours:.2f}x (kept {by_weights[w]['finch']['kept']} tokens)\n"
        for w in a.kvc_weights[1:])
    fmt = lambda ts: ", ".join(f"{t:.3g}" for t in ts)
    title = "GPU" if on_gpu else "CPU"
    dev_args = f" --device {a.device} --dtype {a.dtype}" if on_gpu or a.dtype != "float32" else ""
    if a.kvc_weights != (["float"] if on_gpu else ["float", "int8"]):
        dev_args += f" --kvc-weights {','.join(a.kvc_weights)}"
    if a.profile:
        dev_args += f" --profile {a.profile}"
    text = f"""# Compression speed on {title}: kvc Finch vs kvpress FinchPress

- Command: `bench/speed/run.py --tokens {a.tokens}{' --exact' if a.exact else ''} --ratio {a.ratio:g} --threads {a.threads} --repeats {a.repeats}{dev_args}`
- Date: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC; {where}; load average {loadavg()}
- Record {rec['id']} ({rec['family']}{', context cut to length' if a.exact else ''}): {len(ctx)} context tokens + {len(suffix)} query tokens, ratio {a.ratio:g}x
  (kvc keeps {ours['finch']['kept']} tokens in {ours['finch']['chunks']} chunk(s) of its default 2048).
- Model: SmolLM2-135M-Instruct (GGUF dequantized to {a.dtype}) in both engines, on {a.device}; the same token ids.

| run | median s | runs (s) |
|---|---:|---|
""" + "".join(f"| {n} | {m:.3g} | {fmt(ts)} |\n" for n, m, ts in rows) + f"""
- kvc Finch / kvpress FinchPress: **{f_ours / med['kvpress finch']:.2f}x** (target <= 0.67x)
- kvc Finch / kvc plain prefill: **{f_ours / p_ours:.2f}x** (target <= 1.15x)
- kvc focus / kvc Finch on the same tokens: **{ours['focus']['median_s'] / f_ours:.2f}x** (target <= 1.15x)
- kvc plain prefill / transformers plain prefill: {p_ours / med['transformers prefill']:.2f}x
{other}"""
    if a.profile:
        # One more run of each kvc method under LibTorch's profiler; its Chrome traces stay in the directory.
        for m in ("finch", "none", "focus"):
            prof = ours[m]["profile"]
            table = pathlib.Path(prof["table"]).read_text().split("\n", 2)[2]
            text += f"\n## Profile: kvc {m} (one run under the profiler, {prof['wall_ms'] / 1000:.3g} s)\n\n{table}"
    pathlib.Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
