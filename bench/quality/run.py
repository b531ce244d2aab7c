#!/usr/bin/env python3
"""Quality protocol of DESIGN §11: kvc's methods, with kvpress beside them, per family and size.

Steps (all engines run on the same prompt token ids):
  1. `kvc-eval --tokenize-only` on the data: each record's context_ids / suffix_ids, which put it in one tier:
       short  context <= --max-context-tokens (2500) tokens (and inside the window);
       fits   longer, but inside the model's window: context <= --window-tokens (8192) - its suffix tokens
              - --max-new-tokens (16);
       past   beyond the window.
  2. kvc-eval on the short records with --methods x --ratios (none runs once, at ratio 1).
  3. kvc-eval on the fits records with the full cache (none, always) and --long-methods at --long-ratios.
  4. kvc-eval on the past records with --long-methods at --long-ratios only (past the window only chunked
     Finch and truncation can run; none is dropped from --long-methods there).
  5. bench/quality/kvpress_eval.py on the short records' ids with --kvpress presses x --ratios, and, with
     --kvpress-fits, on the fits records' ids with --kvpress presses x --long-ratios (kvpress prefills the
     whole context at once, so it cannot go past the model's window).
  6. Accuracy tables per tier (per family, per size bucket, overall; "% of full"; mean compress_s / decode_s /
     kept per row), with a "kvpress best" line per ratio (the press with the best accuracy at that ratio,
     named) next to kvc's rows at that ratio, in markdown at --out, and every raw JSON line in --jsonl
     (default: --out with .jsonl).
Exits non-zero if any run reported "error" or a step failed (the report is still written).

  bench/quality/run.py --data /work/shared/eval/dev.jsonl                     # the full protocol (long!)
  bench/quality/run.py --data dev.jsonl --max-records 2 --ratios 4 --methods none,finch --kvpress finch \\
      --out /tmp/q.md

Any dev.jsonl-format file works (records {id, family, context, question, answers, chars}): the family columns
are the data's families in order of appearance, and the size columns group the data's "chars" values: sorted,
a new group starts at the first value more than 1.5x the smallest of the current group; a group is named by
its smallest chars in thousands, rounded down ("16K"; "4-7K", from the smallest rounded down to the largest
rounded up, when its ends differ by more than 20%).
"% of full": the row's correct answers as a percentage of the full cache's correct answers on the same records
(the same engine's full cache where it ran on them -- kvpress's none, or a "kvc DTYPE" engine's none --, else
kvc's); only in tiers where the full cache ran (short, fits), "n/a" where the full cache got none right.
--resume keys rows by (record id, engine, method, ratio) and the record's context tokens: a stage's record is
done when every row that stage asks for is in --jsonl; then those rows are carried, else the record runs again.
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
TIERS = ("short", "fits", "past")


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
                   help="kvpress presses for the short records (and the fits ones with --kvpress-fits): none,finch,"
                        "finch_qa,snapkv,snapkv_qa,chunkkv,chunkkv_qa,expected_attention,expected_attention_qa,kvzip "
                        "(kvpress_eval.py --help); empty: skip")
    p.add_argument("--ratios", default="2,4,8,16,32")
    p.add_argument("--max-records", type=int, default=0, help="only the first N records (0: all)")
    p.add_argument("--max-context-tokens", type=int, default=2500,
                   help="records with more context tokens are not short: fits or past the window")
    p.add_argument("--keep-errors", action="store_true",
                   help="with --resume, carry rows that ended in an error (a press that cannot run at a ratio) "
                        "instead of running them again")
    p.add_argument("--past-max-tokens", type=int, default=0,
                   help="skip the records past the window whose context has more tokens than this (0: none skipped); "
                        "the report counts them as skipped")
    p.add_argument("--window-tokens", type=int, default=8192,
                   help="the model's window: a record fits when context + suffix + --max-new-tokens <= this")
    p.add_argument("--long-methods", default="finch,truncate",
                   help="kvc methods for the fits records (beside the full cache) and the past ones")
    p.add_argument("--long-ratio", "--long-ratios", dest="long_ratios", default="8",
                   help="comma-separated ratios for the fits and past records (a single number as before works)")
    p.add_argument("--kvpress-fits", action="store_true",
                   help="also run the --kvpress presses on the fits records, at --long-ratios (slow)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality-dev.md"))
    p.add_argument("--jsonl", default=None, help="raw JSON lines (default: --out with the suffix .jsonl)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--cache-dtypes", default="memory",
                   help="kvc-eval --cache-dtypes for the short records: memory and/or f32,bf16,f16,int8 (rows 'kvc DTYPE') "
                        "and/or stored (rows 'kvc stored': compressed at query time from the full cache stored "
                        "without a question, two-stage)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in --jsonl and run only the records a stage has not finished "
                        "(a record counts as finished when every method x ratio row of that stage is there)")
    p.add_argument("--option", action="append", default=[], help="kvc-eval --option METHOD.NAME=VALUE (repeatable)")
    p.add_argument("--model", default=None, help="model for both engines (default: the packaged SmolLM2 GGUF)")
    p.add_argument("--kvc-eval", default=default_kvc_eval())
    p.add_argument("--python", default=default_python(), help="interpreter for kvpress_eval.py")
    a = p.parse_args(argv)
    a.methods, a.kvpress, a.long_methods = csv(a.methods), csv(a.kvpress), csv(a.long_methods)
    try:
        a.ratios = [float(x) for x in csv(a.ratios)]
        a.long_ratios = [float(x) for x in csv(a.long_ratios)]
    except ValueError as e:
        p.error(f"ratios: {e}")
    if any(r <= 1 for r in a.ratios + a.long_ratios):
        p.error("ratios must be > 1")
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


class Sizes:
    """Size buckets from the data's own "chars" values (see the module docstring)."""

    GAP, SAME = 1.5, 1.2

    def __init__(self, chars):
        groups: list[list[int]] = []
        for v in sorted({max(int(c), 1) for c in chars}):
            if groups and v <= groups[-1][0] * self.GAP:
                groups[-1].append(v)
            else:
                groups.append([v])
        self.ranges = [(g[0], g[-1]) for g in groups]

        labels = []
        for lo, hi in self.ranges:
            if lo < 1000:
                labels.append(str(lo) if hi <= lo * self.SAME else f"{lo}-{hi}")
            else:
                labels.append(f"{lo // 1000}K" if hi <= lo * self.SAME else f"{lo // 1000}-{-(-hi // 1000)}K")
        if len(set(labels)) != len(labels):
            labels = [f"{lo}-{hi}" for lo, hi in self.ranges]
        self.labels = labels

    def of(self, chars) -> int:
        v = max(int(chars), 1)
        for i, (lo, hi) in enumerate(self.ranges):
            if lo <= v <= hi:
                return i
        return min(range(len(self.ranges)),  # not in the data (a carried row): the nearest group, in log scale
                   key=lambda i: min(abs(math.log(v / self.ranges[i][0])), abs(math.log(v / self.ranges[i][1]))))

    def label(self, i: int) -> str:
        return self.labels[i]


def base_method(m: str) -> str:
    return m[:-3] if m.endswith("_qa") else m


def row_order(a: argparse.Namespace):
    """Full cache rows first, then ratio by ratio: kvc's rows, then kvpress's."""
    order = {m: i for i, m in enumerate(a.methods + a.long_methods + [base_method(p) for p in a.kvpress])}

    def key(row):
        engine, method, ratio = row
        return (method != "none", ratio, engine == "kvpress", order.get(base_method(method), 99), method, engine)
    return key


def row_label(row) -> str:
    engine, method, ratio = row
    if method == "none":
        return f"full cache ({engine})"
    return f"{engine} {method} {fmt_ratio(ratio)}"


def mean(xs: list[float], digits: int = 2) -> str:
    return f"{sum(xs) / len(xs):.{digits}f}" if xs else "n/a"


def group_rows(results: list[dict]) -> dict[tuple, list[dict]]:
    rows: dict[tuple, list[dict]] = collections.defaultdict(list)
    for r in results:
        rows[(r["engine"], r["method"], float(r["ratio"]))].append(r)
    return rows


def full_references(rows: dict[tuple, list[dict]]) -> dict[str, dict[str, bool]]:
    """engine -> {record id: correct} of that engine's full cache (error-free rows)."""
    refs: dict[str, dict[str, bool]] = {}
    for (engine, method, _), rs in rows.items():
        if method == "none":
            refs.setdefault(engine, {}).update({r["id"]: bool(r["correct"]) for r in rs if "error" not in r})
    return {e: m for e, m in refs.items() if m}


def pct_of_full(rs: list[dict], ref: dict[str, bool] | None) -> str:
    """The rows' correct answers as a % of the full cache's correct answers on the same records."""
    if not ref:
        return "-"
    same = [r for r in rs if r["id"] in ref]
    if not same:
        return "-"
    full = sum(ref[r["id"]] for r in same)
    return f"{100 * sum(bool(r['correct']) for r in same) / full:.0f}%" if full else "n/a"


def accuracy(rs: list[dict]) -> float:
    return sum(bool(r["correct"]) for r in rs) / len(rs) if rs else -1.0


def table(results: list[dict], a: argparse.Namespace, sizes: Sizes, families: list[str]) -> list[str]:
    """One tier's table; with a "kvpress best" line after each ratio's rows where kvpress ran at that ratio."""
    present = {r["family"] for r in results}
    fams = [f for f in families if f in present] + sorted(present - set(families))
    buckets = sorted({sizes.of(r["chars"]) for r in results})
    rows = group_rows(results)
    refs = full_references(rows)
    with_full = bool(refs)
    any_err = any("error" in r for r in results)
    head = ["method"] + fams + [sizes.label(b) for b in buckets] + ["overall"]
    head += ["% of full"] if with_full else []
    head += ["n", "mean compress_s (CPU)", "mean decode_s (CPU)", "mean kept"]
    if any_err:
        head.append("errors")
    L = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]

    def cell(rs, ref):
        if not rs:
            return "-"
        c = f"{sum(bool(r['correct']) for r in rs)}/{len(rs)}"
        return f"{c} · {pct_of_full(rs, ref)}" if with_full else c

    def line(label: str, row) -> str:
        rs = [r for r in rows[row] if "error" not in r]
        engine = row[0]
        ref = refs.get(engine) or refs.get("kvc")
        if ref is not None and not any(r["id"] in ref for r in rs):
            ref = refs.get("kvc")
        c = sum(bool(r["correct"]) for r in rs)
        cols = [label] + [cell([r for r in rs if r["family"] == f], ref) for f in fams]
        cols += [cell([r for r in rs if sizes.of(r["chars"]) == b], ref) for b in buckets]
        cols.append(f"{100 * c / len(rs):.0f}% ({c}/{len(rs)})" if rs else "-")
        if with_full:
            cols.append(pct_of_full(rs, ref))
        timed = [r for r in rs if not r.get("device")]  # seconds from this CPU only
        cols += [str(len(rs)), mean([r["compress_s"] for r in timed]), mean([r["decode_s"] for r in timed]),
                 mean([r["kept"] for r in rs], 0)]
        if any_err:
            cols.append(str(len(rows[row]) - len(rs)))
        return "| " + " | ".join(cols) + " |"

    ordered = sorted(rows, key=row_order(a))
    for i, row in enumerate(ordered):
        L.append(line(row_label(row), row))
        ratio = row[2]
        if ratio > 1 and (i + 1 == len(ordered) or ordered[i + 1][2] != ratio):  # the last row at this ratio
            presses = [k for k in ordered if k[0] == "kvpress" and k[2] == ratio and k[1] != "none"
                       and any("error" not in r for r in rows[k])]
            if presses:
                best = max(accuracy([r for r in rows[k] if "error" not in r]) for k in presses)
                tied = [k for k in presses if accuracy([r for r in rows[k] if "error" not in r]) == best]
                names = " = ".join(k[1] for k in tied)
                L.append(line(f"**kvpress best {fmt_ratio(ratio)}: {names}**", tied[0]))
    return L


def timing_table(results: list[dict], a: argparse.Namespace, sizes: Sizes) -> list[str]:
    ok = [r for r in results if "error" not in r]
    buckets = sorted({sizes.of(r["chars"]) for r in ok})
    rows = group_rows(ok)
    head = ["method"] + [f"{sizes.label(b)} ({mean([r['context_tokens'] for r in ok if sizes.of(r['chars']) == b], 0)}"
                         " tok)" for b in buckets]
    L = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for row in sorted(rows, key=row_order(a)):
        cols = [row_label(row)]
        for b in buckets:
            rs = [r for r in rows[row] if sizes.of(r["chars"]) == b]
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


def ratios_text(rs: list[float]) -> str:
    return ", ".join(fmt_ratio(r) for r in rs)


def render(a, cmdline: str, runner: Runner, counts: dict[str, int], load_before: str, started: str,
           sizes: Sizes, families: list[str]) -> str:
    res = runner.results
    L = [f"# Quality on {pathlib.Path(a.data).name}: kvc methods vs kvpress (DESIGN §11)", ""]
    L.append(f"- Command: `{cmdline}`")
    L.append(f"- Date: {started} (finished {dt.datetime.now().astimezone().strftime('%H:%M:%S %Z')})")
    L.append(f"- CPU: {cpu_model()} ({os.cpu_count()} logical cores visible); threads per engine: {a.threads}")
    L.append(f"- Load average (1/5/15 min) before / after: {load_before}  |  {loadavg()} (timings are only clean "
             "when nothing else ran)")
    L.append(f"- Data: `{a.data}`: {sum(counts.values())} records, {counts['short']} short (context <= "
             f"{a.max_context_tokens} tokens), {counts['fits']} longer but inside the {a.window_tokens}-token window "
             f"(context + suffix + {a.max_new_tokens} new tokens), {counts['past']} past the window"
             + (f"; {counts.get('skipped', 0)} past records over --past-max-tokens "
                f"{a.past_max_tokens} skipped" if a.past_max_tokens else ""))
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
    L.append("Cells are correct/total, then (`·`) the % of the full cache's correct answers on the same records "
             "(against the row's own engine's full cache where it ran, else kvc's; n/a where the full cache got none "
             "right); size columns group the data's `chars`. `overall` is accuracy. Rows go full cache first, then "
             "ratio by ratio, kvc before kvpress; **kvpress best** repeats the kvpress press with the best accuracy "
             "at that ratio (ties named together). Mean seconds are per record.")
    L.append("")
    press_fits = a.kvpress if a.kvpress_fits else []
    sections = {
        "short": (f"Short records (context <= {a.max_context_tokens} tokens): full cache, "
                  f"{', '.join(m for m in a.methods if m != 'none') or 'no kvc method'} at {ratios_text(a.ratios)}; "
                  f"kvpress {', '.join(a.kvpress) or 'not run'}"),
        "fits": (f"Records inside the window (context > {a.max_context_tokens} tokens, context + suffix + "
                 f"{a.max_new_tokens} <= {a.window_tokens}): full cache, "
                 f"{', '.join(fits_methods(a)[1:]) or 'no kvc method'} at {ratios_text(a.long_ratios)}; kvpress "
                 + (', '.join(press_fits) if press_fits else "not run (--kvpress-fits)")),
        "past": (f"Records past the window: kvc {', '.join(past_methods(a)) or 'nothing'} at "
                 f"{ratios_text(a.long_ratios)} only (no full cache, so no % of full; no kvpress)"),
    }
    for tier in TIERS:
        part = [r for r in res if r["_part"] == tier]
        L.append(f"## {sections[tier]}")
        L.append("")
        L += table(part, a, sizes, families) if part else [f"(no {tier} records)" if not counts[tier]
                                                            else "(no results)"]
        L.append("")
    L.append("## Mean seconds per record, compress + decode, by size")
    L.append("")
    on_cpu = [r for r in res if not r.get("device")]
    L += timing_table(on_cpu, a, sizes) if on_cpu else ["(no results)"]
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
        "the press. chunkkv: ChunkKVPress(SnapKVPress as snapkv, chunk_length 20), whole 20-token chunks kept; "
        "expected_attention: ExpectedAttentionPress (kvpress defaults: 512 future positions, 4 sinks, covariance, "
        "value norms); both applied as snapkv, with _qa variants as snapkv_qa. kvzip: KVzipPress (kvpress "
        "defaults), the context replayed after a repeat prompt to score it, eviction by masking per layer and "
        "head (kept = mean unmasked entries), with kvc's protected prefix as its prefix. No protected prefix "
        "beyond the sinks of expected_attention and kvzip.",
    ]
    return "\n".join(L) + "\n"


# -------------------------------------------------------------------------------------------------- main

def fits_methods(a: argparse.Namespace) -> list[str]:
    """kvc methods for the fits records: the full cache always, then --long-methods."""
    return ["none"] + [m for m in a.long_methods if m != "none"]


def past_methods(a: argparse.Namespace) -> list[str]:
    """kvc methods for the records past the window: --long-methods without the full cache."""
    return [m for m in a.long_methods if m != "none"]


def tier_of(a: argparse.Namespace, ids: dict) -> str:
    n = len(ids["context_ids"])
    fits = n + len(ids["suffix_ids"]) + a.max_new_tokens <= a.window_tokens
    if not fits:
        return "past"
    return "short" if n <= a.max_context_tokens else "fits"


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    cmdline = command_line(argv, ROOT)
    started = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    load_before = loadavg()
    if not pathlib.Path(a.kvc_eval).exists():
        log(f"no kvc-eval at {a.kvc_eval}; build it first (cmake --build build --target kvc-eval)")
        return 2
    if pathlib.Path(a.data).resolve() in (pathlib.Path(a.jsonl).resolve(), pathlib.Path(a.out).resolve()):
        log(f"--data {a.data} is also the --jsonl or --out file, which this run overwrites; choose another --out")
        return 2

    lines, records = [], []
    with open(a.data, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(rec, dict):
                continue
            lines.append(line)
            records.append(rec)
            if a.max_records and len(lines) >= a.max_records:
                break
    sizes = Sizes(r.get("chars", len(r.get("context", ""))) for r in records)
    families = list(dict.fromkeys(str(r.get("family")) for r in records))

    common = ["--threads", str(a.threads), "--max-new-tokens", str(a.max_new_tokens)]
    if a.model:
        common += ["--model", a.model]
    kvc_common = common + [x for o in a.option for x in ("--option", o)]
    ratios = ",".join(f"{r:g}" for r in a.ratios)
    long_ratios = ",".join(f"{r:g}" for r in a.long_ratios)

    previous: list[dict] = []
    if a.resume and pathlib.Path(a.jsonl).exists():
        with open(a.jsonl, encoding="utf-8") as f:
            previous = [r for r in (json.loads(x) for x in f if x.strip()) if a.keep_errors or "error" not in r]
        log(f"resume: {len(previous)} rows from {a.jsonl}")
    runner = Runner(pathlib.Path(a.jsonl))
    ids: list[dict] = []
    tiers: dict[str, list[int]] = {t: [] for t in TIERS}
    skipped: list[str] = []
    tmp = tempfile.TemporaryDirectory(prefix="kvc-quality-")
    try:
        d = pathlib.Path(tmp.name)
        write_jsonl(d / "data.jsonl", lines)
        ids = runner.run("tokenize", [a.kvc_eval, "--data", str(d / "data.jsonl"), "--tokenize-only"] + common, None)
        if len(ids) != len(lines):
            runner.failures.append(f"tokenize-only gave {len(ids)} records for {len(lines)}")
            ids = []
        for i, r in enumerate(ids):
            tier = tier_of(a, r)
            if tier == "past" and a.past_max_tokens and len(r["context_ids"]) > a.past_max_tokens:
                skipped.append(records[i]["id"])
                continue
            tiers[tier].append(i)
        log(", ".join(f"{len(v)} {k}" for k, v in tiers.items()) + " records")
        rec_id = [r["id"] for r in records]
        kvc_engines = ["kvc" if dt_ == "memory" else f"kvc {dt_}" for dt_ in csv(a.cache_dtypes)]

        def is_kvc(e: str) -> bool:
            return e.startswith("kvc")

        def is_kvpress(e: str) -> bool:
            return e == "kvpress"

        def keys(engines, methods, rs) -> set[tuple]:
            return {(e, m, 1.0 if m == "none" else float(r)) for e in engines for m in methods for r in rs}

        press_fits = a.kvpress if a.kvpress_fits else []
        stages = {  # stage -> (tier, record indices, engine test, expected (engine, method, ratio) rows)
            "kvc short": ("short", tiers["short"], is_kvc, keys(kvc_engines, a.methods, a.ratios)),
            "kvc fits": ("fits", tiers["fits"], is_kvc, keys(["kvc"], fits_methods(a), a.long_ratios)),
            "kvc past": ("past", tiers["past"], is_kvc, keys(["kvc"], past_methods(a), a.long_ratios)),
            "kvpress short": ("short", tiers["short"], is_kvpress, keys(["kvpress"], a.kvpress, a.ratios)),
            "kvpress fits": ("fits", tiers["fits"], is_kvpress, keys(["kvpress"], press_fits, a.long_ratios)),
        }
        todo: dict[str, list[int]] = {}
        for stage, (tier, idx, engine_ok, expected) in stages.items():
            todo[stage] = []
            if not expected:
                continue
            for i in idx:
                n = len(ids[i]["context_ids"])
                got: dict[tuple, dict] = {}  # the last row of each key, from a run on the same token count
                for r in previous:
                    if r["id"] == rec_id[i] and engine_ok(r["engine"]) and r.get("context_tokens") == n:
                        k = (r["engine"], r["method"], float(r["ratio"]))
                        if k in expected:
                            got[k] = r
                if expected <= set(got):
                    for r in got.values():
                        runner.keep(r, tier)
                else:
                    todo[stage].append(i)
            if a.resume:
                log(f"resume: {stage}: {len(idx) - len(todo[stage])} records done, {len(todo[stage])} to run")

        def data_file(stage: str) -> str:
            path = d / f"{stage.replace(' ', '_')}.jsonl"
            if stage.startswith("kvpress"):
                write_jsonl(path, [json.dumps(ids[i]) for i in todo[stage]])
            else:
                write_jsonl(path, [lines[i] for i in todo[stage]])
            return str(path)

        kvc_eval = [a.kvc_eval, "--data"]
        kvpress_eval = [a.python, str(ROOT / "bench" / "quality" / "kvpress_eval.py"), "--ids"]
        mct = ["--max-context-tokens", str(a.max_context_tokens)]
        if todo["kvc short"]:
            runner.run("kvc short", kvc_eval + [data_file("kvc short"), "--methods", ",".join(a.methods), "--ratios",
                                                ratios, "--cache-dtypes", a.cache_dtypes] + mct + kvc_common, "short")
        if todo["kvc fits"]:
            fm = ",".join(fits_methods(a))  # every fits record is under --window-tokens: kvc-eval runs them all
            runner.run("kvc fits", kvc_eval + [data_file("kvc fits"), "--methods", fm, "--long-methods", fm,
                                               "--ratios", long_ratios, "--max-context-tokens", str(a.window_tokens)]
                       + kvc_common, "fits")
        if todo["kvc past"]:
            pm = ",".join(past_methods(a))
            runner.run("kvc past", kvc_eval + [data_file("kvc past"), "--methods", pm, "--long-methods", pm,
                                               "--ratios", long_ratios] + mct + kvc_common, "past")
        if todo["kvpress short"]:
            runner.run("kvpress short", kvpress_eval + [data_file("kvpress short"), "--presses", ",".join(a.kvpress),
                                                        "--ratios", ratios] + common, "short")
        if todo["kvpress fits"]:
            runner.run("kvpress fits", kvpress_eval + [data_file("kvpress fits"), "--presses", ",".join(press_fits),
                                                       "--ratios", long_ratios] + common, "fits")
    except KeyboardInterrupt:
        runner.failures.append("interrupted")
        log("interrupted; writing what there is")
    finally:
        runner.close()
        tmp.cleanup()

    report = render(a, cmdline, runner, {**{t: len(v) for t, v in tiers.items()}, "skipped": len(skipped)}, load_before, started, sizes,
                    families)
    print(report)
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    log(f"wrote {out} and {a.jsonl}")
    errors = sum("error" in r for r in runner.results)
    return 1 if errors or runner.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
