#!/usr/bin/env python3
"""Quality protocol of DESIGN §11: kvc's methods, with kvpress beside them, per family and size.

Steps (all engines run on the same prompt token ids):
  1. `kvc-eval --tokenize-only` on the data: each record's context_ids / suffix_ids; records whose context has
     more than --max-context-tokens tokens are "long", the others "short".
  2. kvc-eval on the short records with --methods x --ratios (none runs once, at ratio 1).
  3. kvc-eval on the long records with --long-methods at --long-ratio only (past the 8K window only chunked
     Finch and truncation can run).
  4. bench/quality/kvpress_eval.py on the short records' ids with --kvpress presses x --ratios (kvpress
     prefills the whole context at once, so it cannot go past the model's window).
  5. Accuracy tables (per family, per size bucket, overall; mean compress_s / decode_s / kept per row) in
     markdown at --out, and every raw JSON line in --jsonl (default: --out with .jsonl).
Exits non-zero if any run reported "error" or a step failed (the report is still written).

  bench/quality/run.py --data /work/shared/eval/dev.jsonl                     # the full protocol (long!)
  bench/quality/run.py --data dev.jsonl --max-records 2 --ratios 4 --methods none,finch --kvpress finch \\
      --out /tmp/q.md

Size buckets: each record's "chars" rounded to the nearest (in log scale) of 4K, 8K, 16K, 28K, 64K, 128K.
kvc-eval's settings are its defaults unless --option METHOD.NAME=VALUE is given (finch: chunk_tokens=2048,
keep_query off, kv_head granularity; snapkv: window 64 over context tail + suffix; the protected ChatML prefix
is always kept). kvpress_eval.py --help describes the kvpress runs.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import math
import os
import pathlib
import platform
import shlex
import subprocess
import sys
import tempfile
import time
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench_env import build_binary, command_line, cpu_model, loadavg  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUCKETS = (4000, 8000, 16000, 28000, 64000, 128000)


def log(msg: str) -> None:
    print(f"[quality] {msg}", file=sys.stderr, flush=True)


def default_kvc_eval() -> str:
    return build_binary("kvc-eval", ROOT)


def default_python() -> str:
    venv = pathlib.Path(os.environ.get("KVC_VENV", ROOT / ".venv")) / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dev.jsonl-format file")
    p.add_argument("--methods", default="none,finch,snapkv,truncate", help="kvc methods for the short records")
    p.add_argument("--kvpress", default="finch,snapkv",
                   help="kvpress presses for the short records (none,finch,finch_qa,snapkv,snapkv_qa; empty: skip)")
    p.add_argument("--ratios", default="2,4,8,16,32")
    p.add_argument("--max-records", type=int, default=0, help="only the first N records (0: all)")
    p.add_argument("--max-context-tokens", type=int, default=2500,
                   help="records with more context tokens are long: --long-methods at --long-ratio, no kvpress")
    p.add_argument("--long-methods", default="finch,truncate")
    p.add_argument("--long-ratio", type=float, default=8)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality-dev.md"))
    p.add_argument("--jsonl", default=None, help="raw JSON lines (default: --out with the suffix .jsonl)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--cache-dtypes", default="memory",
                   help="kvc-eval --cache-dtypes for the short records: memory and/or f32,bf16,f16,int8 (rows 'kvc DTYPE')")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in --jsonl and run only the records a stage has not finished "
                        "(a record counts as finished when every method x ratio row of that stage is there)")
    p.add_argument("--option", action="append", default=[], help="kvc-eval --option METHOD.NAME=VALUE (repeatable)")
    p.add_argument("--model", default=None, help="model for both engines (default: the packaged SmolLM2 GGUF)")
    p.add_argument("--kvc-eval", default=default_kvc_eval())
    p.add_argument("--python", default=default_python(), help="interpreter for kvpress_eval.py")
    a = p.parse_args(argv)
    a.methods, a.kvpress, a.long_methods = csv(a.methods), csv(a.kvpress), csv(a.long_methods)
    a.ratios = [float(x) for x in csv(a.ratios)]
    if a.jsonl is None:
        a.jsonl = str(pathlib.Path(a.out).with_suffix(".jsonl"))
    return a


# ------------------------------------------------------------------------------------------------ running

class Runner:
    """Runs the engines one after the other, streaming their JSON lines into one list and the --jsonl file."""

    def __init__(self, jsonl: pathlib.Path):
        jsonl.parent.mkdir(parents=True, exist_ok=True)
        self.sink = open(jsonl, "w", encoding="utf-8")
        self.results: list[dict] = []
        self.failures: list[str] = []
        self.stage_seconds: dict[str, float] = {}
        self.carried = 0  # rows kept from an earlier run (--resume)

    def run(self, stage: str, cmd: list[str], part: str | None) -> list[dict]:
        log(f"{stage}: {shlex.join(cmd)}")
        t0 = time.time()
        got: list[dict] = []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log(f"{stage}: not JSON: {line[:200]}")
                continue
            got.append(rec)
            if part is not None:  # a result line (not a tokenize-only one)
                self.sink.write(line + "\n")
                self.sink.flush()
                rec["_part"] = part
                self.results.append(rec)
                if "error" in rec:
                    log(f"{stage}: {rec.get('id')} {rec.get('method')} {rec.get('ratio')}: error {rec['error']}")
                else:
                    log(f"{stage}: {rec['id']} {rec['method']} {fmt_ratio(rec['ratio'])} "
                        f"correct={rec['correct']} compress {rec['compress_s']:.2f}s decode {rec['decode_s']:.2f}s")
        rc = proc.wait()
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0) + time.time() - t0
        if rc != 0:
            self.failures.append(f"{stage} exited with {rc}")
            log(f"{stage}: exited with {rc}")
        return got

    def keep(self, rec: dict, part: str) -> None:
        """Carries a row of an earlier run (--resume) into this one."""
        self.sink.write(json.dumps({k: v for k, v in rec.items() if k != "_part"}) + "\n")
        self.sink.flush()
        self.results.append(dict(rec, _part=part))
        self.carried += 1

    def close(self) -> None:
        self.sink.close()


def write_jsonl(path: pathlib.Path, lines: list[str]) -> None:
    path.write_text("".join(x if x.endswith("\n") else x + "\n" for x in lines), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- aggregation

def fmt_ratio(r: float) -> str:
    return "full" if r <= 1 else f"{r:g}x"


def bucket(chars: int) -> int:
    return min(BUCKETS, key=lambda b: abs(math.log(max(chars, 1) / b)))


def bucket_label(b: int) -> str:
    return f"{b // 1000}K"


def base_method(m: str) -> str:
    return m[:-3] if m.endswith("_qa") else m


def row_order(a: argparse.Namespace):
    order = {m: i for i, m in enumerate(a.methods + a.long_methods + [base_method(p) for p in a.kvpress])}

    def key(row):
        engine, method, ratio = row
        return (method != "none", order.get(base_method(method), 99), ratio, engine != "kvc", method)
    return key


def row_label(row) -> str:
    engine, method, ratio = row
    if method == "none":
        return f"full cache ({engine})"
    return f"{engine} {method} {fmt_ratio(ratio)}"


def mean(xs: list[float], digits: int = 2) -> str:
    return f"{sum(xs) / len(xs):.{digits}f}" if xs else "n/a"


def table(results: list[dict], a: argparse.Namespace) -> list[str]:
    ok = [r for r in results if "error" not in r]
    families = list(dict.fromkeys(r["family"] for r in results))
    buckets = sorted({bucket(r["chars"]) for r in results})
    rows: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in results:
        rows[(r["engine"], r["method"], float(r["ratio"]))].append(r)
    any_err = len(ok) != len(results)
    head = ["method"] + families + [bucket_label(b) for b in buckets] + ["overall", "n", "mean compress_s (CPU)",
                                                                        "mean decode_s (CPU)", "mean kept"]
    if any_err:
        head.append("errors")
    L = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]

    def cell(rs):
        return f"{sum(r['correct'] for r in rs)}/{len(rs)}" if rs else "-"

    for row in sorted(rows, key=row_order(a)):
        rs = [r for r in rows[row] if "error" not in r]
        c = sum(r["correct"] for r in rs)
        overall = f"{100 * c / len(rs):.0f}% ({c}/{len(rs)})" if rs else "-"
        cols = [row_label(row)] + [cell([r for r in rs if r["family"] == f]) for f in families]
        cols += [cell([r for r in rs if bucket(r["chars"]) == b]) for b in buckets]
        timed = [r for r in rs if not r.get("device")]  # seconds from this CPU only
        cols += [overall, str(len(rs)), mean([r["compress_s"] for r in timed]), mean([r["decode_s"] for r in timed]),
                 mean([r["kept"] for r in rs], 0)]
        if any_err:
            cols.append(str(len(rows[row]) - len(rs)))
        L.append("| " + " | ".join(cols) + " |")
    return L


def timing_table(results: list[dict], a: argparse.Namespace) -> list[str]:
    ok = [r for r in results if "error" not in r]
    buckets = sorted({bucket(r["chars"]) for r in ok})
    rows: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in ok:
        rows[(r["engine"], r["method"], float(r["ratio"]))].append(r)
    head = ["method"] + [f"{bucket_label(b)} ({mean([r['context_tokens'] for r in ok if bucket(r['chars']) == b], 0)} tok)"
                         for b in buckets]
    L = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in sorted(rows, key=row_order(a)):
        cols = [row_label(row)]
        for b in buckets:
            rs = [r for r in rows[row] if bucket(r["chars"]) == b]
            cols.append(f"{mean([r['compress_s'] for r in rs])} + {mean([r['decode_s'] for r in rs])}" if rs else "-")
        L.append("| " + " | ".join(cols) + " |")
    return L


# ------------------------------------------------------------------------------------------------ report

def versions(python: str) -> str:
    code = ("import importlib.metadata as m\nfor d in ('torch','transformers','kvpress','tokenizers','gguf'):\n"
            "    try: print(d, m.version(d))\n    except Exception: print(d, 'not installed')")
    out = []
    try:
        r = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        out += [ln.strip() for ln in r.stdout.splitlines() if ln.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            out.append(f"kvc (git) {rev.stdout.strip()}{' + local changes' if dirty.stdout.strip() else ''}")
    except (OSError, subprocess.SubprocessError):
        pass
    return ", ".join(out)


def render(a, cmdline: str, runner: Runner, n_short: int, n_long: int, load_before: str, started: str) -> str:
    res = runner.results
    short = [r for r in res if r["_part"] == "short"]
    long_ = [r for r in res if r["_part"] == "long"]
    L = ["# Quality on dev.jsonl: kvc methods vs kvpress (DESIGN §11)", ""]
    L.append(f"- Command: `{cmdline}`")
    L.append(f"- Date: {started} (finished {dt.datetime.now().astimezone().strftime('%H:%M:%S %Z')})")
    L.append(f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores visible); threads per engine: {a.threads}")
    L.append(f"- Load average (1/5/15 min) before / after: {load_before}  |  {loadavg()} (timings are only clean "
             "when nothing else ran)")
    L.append(f"- Data: `{a.data}`: {n_short + n_long} records, {n_short} short (context <= {a.max_context_tokens} "
             f"tokens), {n_long} long")
    L.append(f"- Model: `{a.model or 'SmolLM2-135M-Instruct.Q4_1.gguf (packaged)'}`; greedy, <= {a.max_new_tokens} "
             "new tokens; correct = any answer in the output, case-insensitive")
    L.append(f"- Versions: {versions(a.python)}")
    L.append("- Stage wall time: " + ", ".join(f"{k} {v:.0f}s" for k, v in runner.stage_seconds.items()))
    if runner.carried:
        L.append(f"- {runner.carried} of {len(res)} rows were carried from earlier runs (--resume); the date, load "
                 "and versions above are this run's")
    if runner.failures:
        L.append(f"- **Failures:** {'; '.join(runner.failures)}")
    n_err = sum("error" in r for r in res)
    if n_err:
        L.append(f"- **{n_err} runs reported an error** (see the jsonl); they are left out of the accuracy")
    elsewhere = collections.Counter((r["engine"], f"{r['device']} {r.get('dtype', '')}".strip())
                                    for r in res if r.get("device"))
    if elsewhere:
        L.append("- Rows computed on another device than this CPU (a `device` field in the jsonl; accuracy only, "
                 "their seconds are left out of the timing table): "
                 + ", ".join(f"{n} {e} rows on {d}" for (e, d), n in sorted(elsewhere.items())))
    L.append(f"- Raw results: `{a.jsonl}`")
    L.append("")
    L.append(f"## Short records (context <= {a.max_context_tokens} tokens)")
    L.append("")
    L.append("Cells are correct/total; size columns bucket `chars`. Mean seconds are per record.")
    L.append("")
    L += table(short, a) if short else ["(no short records)"]
    L.append("")
    L.append(f"## Long records (context > {a.max_context_tokens} tokens): kvc only, "
             f"{', '.join(a.long_methods)} at {fmt_ratio(a.long_ratio)}")
    L.append("")
    L += table(long_, a) if long_ else ["(no long records)"]
    L.append("")
    L.append("## Mean seconds per record, compress + decode, by size")
    L.append("")
    on_cpu = [r for r in res if not r.get("device")]
    L += timing_table(on_cpu, a) if on_cpu else ["(no results)"]
    L.append("")
    kvc_opts = ", ".join(f"`{o}`" for o in a.option) or "none (defaults)"
    L += [
        "## Settings",
        "",
        f"- kvc (`kvc-eval`), options: {kvc_opts}. Defaults: finch is chunked (chunk_tokens=2048), kv_head "
        "granularity, normalize, re-rotation, keep_query off: the suffix (question + generation prompt) scores "
        "each chunk and its KV is dropped, then re-fed on the compressed cache; the budget is context/ratio. "
        "snapkv's 64-token window is the last prefilled tokens, context tail + suffix, so it is query-aware. "
        "The ChatML system prefix is always kept. kvc matches kvpress's kept indices only in its parity mode "
        "(chunk_tokens >= context, keep_query=on), which these runs do not use.",
        "- kvpress (`kvpress_eval.py`, same token ids, transformers dequantized float32, sdpa): "
        "compression_ratio = 1 - 1/ratio. finch: FinchPress(normalize_scores, rerotate_keys) on context + "
        "suffix, window = the whole suffix, budget counts the window, first answer token from the prefill's "
        "logits (computed before the cache is compressed), then decoding at positions n_kept...; finch_qa: window "
        "= the question only, the chat tail fed after compression as kvpress's pipeline feeds question_ids. "
        "snapkv: SnapKVPress(window 64, kernel 5) on the context only (kvpress's pipeline), so the question "
        "plays no part, suffix fed at the original positions; snapkv_qa: context + question prefilled under "
        "the press. No protected prefix.",
    ]
    return "\n".join(L) + "\n"


# -------------------------------------------------------------------------------------------------- main

def main(argv: list[str]) -> int:
    a = parse_args(argv)
    cmdline = command_line(argv, ROOT)
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = loadavg()
    if not pathlib.Path(a.kvc_eval).exists():
        log(f"no kvc-eval at {a.kvc_eval}; build it first (cmake --build build --target kvc-eval)")
        return 2

    lines = []
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    continue
            except json.JSONDecodeError:
                continue
            lines.append(line)
            if a.max_records and len(lines) >= a.max_records:
                break

    common = ["--threads", str(a.threads), "--max-new-tokens", str(a.max_new_tokens)]
    if a.model:
        common += ["--model", a.model]
    kvc_common = common + [x for o in a.option for x in ("--option", o)]
    ratios = ",".join(f"{r:g}" for r in a.ratios)

    previous: list[dict] = []
    if a.resume and pathlib.Path(a.jsonl).exists():
        with open(a.jsonl, encoding="utf-8") as f:
            previous = [r for r in (json.loads(x) for x in f if x.strip()) if "error" not in r]
        log(f"resume: {len(previous)} rows from {a.jsonl}")
    runner = Runner(pathlib.Path(a.jsonl))
    ids: list[dict] = []
    short_i: list[int] = []
    long_i: list[int] = []
    tmp = tempfile.TemporaryDirectory(prefix="kvc-quality-")
    try:
        d = pathlib.Path(tmp.name)
        write_jsonl(d / "data.jsonl", lines)
        ids = runner.run("tokenize", [a.kvc_eval, "--data", str(d / "data.jsonl"), "--tokenize-only"] + common, None)
        if len(ids) != len(lines):
            runner.failures.append(f"tokenize-only gave {len(ids)} records for {len(lines)}")
            ids = []
        short_i = [i for i, r in enumerate(ids) if len(r["context_ids"]) <= a.max_context_tokens]
        long_i = [i for i, r in enumerate(ids) if len(r["context_ids"]) > a.max_context_tokens]
        log(f"{len(short_i)} short and {len(long_i)} long records")
        mct = ["--max-context-tokens", str(a.max_context_tokens)]
        rec_id = [json.loads(x)["id"] for x in lines]
        kvc_engines = ["kvc" if dt_ == "memory" else f"kvc {dt_}" for dt_ in csv(a.cache_dtypes)]
        stages = {  # stage -> (part, record indices, engine test, expected (engine, method, ratio) rows)
            "kvc short": ("short", short_i, lambda e: e.startswith("kvc"),
                          {(e, m, 1.0 if m == "none" else r) for e in kvc_engines for m in a.methods for r in a.ratios}),
            "kvc long": ("long", long_i, lambda e: e.startswith("kvc"),
                         {("kvc", m, float(a.long_ratio)) for m in a.long_methods}),
            "kvpress short": ("short", short_i, lambda e: e == "kvpress",
                              {("kvpress", p, r) for p in a.kvpress for r in a.ratios}),
        }
        todo: dict[str, list[int]] = {}
        for stage, (part, idx, engine_ok, expected) in stages.items():
            todo[stage] = []
            for i in idx:
                rows = [r for r in previous if r["id"] == rec_id[i] and engine_ok(r["engine"])
                        and (part == "short") == (r["context_tokens"] <= a.max_context_tokens)]
                if expected and expected <= {(r["engine"], r["method"], float(r["ratio"])) for r in rows}:
                    for r in rows:
                        runner.keep(r, part)
                else:
                    todo[stage].append(i)
            if a.resume:
                log(f"resume: {stage}: {len(idx) - len(todo[stage])} records done, {len(todo[stage])} to run")
        write_jsonl(d / "short_todo.jsonl", [lines[i] for i in todo["kvc short"]])
        write_jsonl(d / "long_todo.jsonl", [lines[i] for i in todo["kvc long"]])
        write_jsonl(d / "short_ids_todo.jsonl", [json.dumps(ids[i]) for i in todo["kvpress short"]])

        if todo["kvc short"] and a.methods:
            runner.run("kvc short", [a.kvc_eval, "--data", str(d / "short_todo.jsonl"), "--methods", ",".join(a.methods),
                                     "--ratios", ratios, "--cache-dtypes", a.cache_dtypes] + mct + kvc_common, "short")
        if todo["kvc long"] and a.long_methods:
            lm = ",".join(a.long_methods)
            runner.run("kvc long", [a.kvc_eval, "--data", str(d / "long_todo.jsonl"), "--methods", lm, "--long-methods",
                                    lm, "--ratios", f"{a.long_ratio:g}"] + mct + kvc_common, "long")
        if todo["kvpress short"] and a.kvpress:
            runner.run("kvpress short", [a.python, str(ROOT / "bench" / "quality" / "kvpress_eval.py"), "--ids",
                                         str(d / "short_ids_todo.jsonl"), "--presses", ",".join(a.kvpress),
                                         "--ratios", ratios] + common, "short")
    except KeyboardInterrupt:
        runner.failures.append("interrupted")
        log("interrupted; writing what there is")
    finally:
        runner.close()
        tmp.cleanup()

    report = render(a, cmdline, runner, len(short_i), len(long_i), load_before, started)
    print(report)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    log(f"wrote {out} and {a.jsonl}")
    errors = sum("error" in r for r in runner.results)
    return 1 if errors or runner.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
