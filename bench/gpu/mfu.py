#!/usr/bin/env python3
"""kvc's plain prefill (method none) and Finch on a random-weight model directory (bench/gpu/make_random_llama.py)
at one prompt length: seconds, model FLOP utilization against the GPU's dense bfloat16 peak, and the caching
allocator's peak memory, from one kvc-bench-compress run.

  bench/gpu/mfu.py --model DIR [--ids DIR/prompt.json] [--repeats 3] [--device cuda] [--out mfu.md]

FLOPs are the model's forward over the context, counted as 2 x multiply-adds: the Q/K/V/O and MLP
projections (2 x parameters x tokens) plus causal attention (QK^T and PV over the keys before each query,
2 x layers x heads x head_dim x N^2 in all; chunked prefill does the same work). The LM head is left out:
a prefill for a cache needs no logits. Finch's MFU uses the same count, so its extra work (the question's
pass per chunk, scoring, re-rotation) shows as lost utilization, which is the point.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
from bench_env import build_binary  # noqa: E402

# Published dense (no sparsity) bfloat16 tensor-core peaks, TFLOP/s. Both SXM parts share the H100's compute.
PEAKS = [("H200", 989.0), ("H100", 989.0)]


def prefill_flops(cfg: dict, n: int) -> tuple[float, float]:
    """(projection FLOPs, attention FLOPs) of a causal forward over n tokens."""
    h, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    heads, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    d = cfg.get("head_dim") or h // heads
    per_layer_params = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * f
    linear = 2.0 * per_layer_params * layers * n
    attention = 2.0 * layers * heads * d * n * n  # 4·N²·d per head for QK^T and PV, halved by the causal mask
    return linear, attention


def gpu_name(device: str) -> str | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="directory from make_random_llama.py")
    ap.add_argument("--ids", default=None, help="default: MODEL/prompt.json")
    ap.add_argument("--methods", default="none,finch")
    ap.add_argument("--ratio", type=float, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--peak-tflops", type=float, default=None, help="override the detected dense bf16 peak")
    ap.add_argument("--option", action="append", default=[], help="METHOD.NAME=VALUE, passed through")
    ap.add_argument("--out", default=None, help="markdown report (default: print only)")
    a = ap.parse_args()
    model = pathlib.Path(a.model)
    ids = pathlib.Path(a.ids) if a.ids else model / "prompt.json"
    cfg = json.loads((model / "config.json").read_text())

    name = gpu_name(a.device)
    peak = a.peak_tflops
    if peak is None and name:
        peak = next((p for key, p in PEAKS if key in name), None)
    peak_note = (f"{peak:g} TFLOP/s dense bf16 ({'given' if a.peak_tflops else 'published peak for ' + name})"
                 if peak else f"unknown for {name or a.device}: MFU not computed (pass --peak-tflops)")
    print(f"[mfu] device {name or a.device}; peak used: {peak_note}", file=sys.stderr, flush=True)

    cmd = [build_binary("kvc-bench-compress", ROOT), "--model", str(model), "--ids", str(ids), "--methods",
           a.methods, "--ratio", str(a.ratio), "--repeats", str(a.repeats), "--threads", str(a.threads),
           "--device", a.device, "--dtype", a.dtype]
    for o in a.option:
        cmd += ["--option", o]
    print("[mfu] " + " ".join(cmd), file=sys.stderr, flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    n = rows[0]["context_tokens"]
    linear, attention = prefill_flops(cfg, n)
    flops = linear + attention
    gib = 2.0 ** 30
    lines = [
        f"# MFU: kvc prefill and Finch on a random {cfg['_name_or_path']} at {n} tokens",
        "",
        f"- Command: `{' '.join(cmd)}`",
        f"- Device: {name or a.device}; dtype {a.dtype}; peak used: {peak_note}",
        f"- Shape: hidden {cfg['hidden_size']}, {cfg['num_hidden_layers']} layers, {cfg['num_attention_heads']} "
        f"heads, {cfg.get('num_key_value_heads')} KV heads, intermediate {cfg['intermediate_size']}, vocab "
        f"{cfg['vocab_size']}",
        f"- FLOPs over {n} context tokens: {flops / 1e12:.1f} TFLOP ({linear / 1e12:.1f} projections + "
        f"{attention / 1e12:.1f} causal attention; LM head not counted)",
        "",
        "| method | median s | runs (s) | chunks | kept | TFLOP/s | MFU | weights GiB | peak GiB | peak - weights GiB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tflops = flops / r["median_s"] / 1e12
        mfu = f"**{100 * tflops / peak:.1f}%**" if peak else "n/a"
        w, p = r.get("weights_bytes"), r.get("peak_bytes")
        mem = (f"{w / gib:.2f} | {p / gib:.2f} | {(p - w) / gib:.2f}" if w is not None and p is not None
               else "n/a | n/a | n/a")
        runs = ", ".join(f"{t:.3g}" for t in r["times_s"])
        lines.append(f"| {r['method']} | {r['median_s']:.3g} | {runs} | {r['chunks']} | {r['kept']} | "
                     f"{tflops:.3g} | {mfu} | {mem} |")
    text = "\n".join(lines) + "\n"
    if a.out:
        pathlib.Path(a.out).write_text(text)
    print(text)
    print(json.dumps({"rows": rows, "flops": flops, "peak_tflops": peak, "gpu": name}), file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
