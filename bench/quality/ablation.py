#!/usr/bin/env python3
"""What each piece of a method buys: kvc-eval on the same records with one option changed at a time.

  bench/quality/ablation.py --data ../shared/eval/dev.jsonl --method focus --ratios 8 \\
      --families passkey,multikey --variants "score=attention;span=token;selection=kv_head" \\
      --out bench/results/quality-ablation.md

Each variant is the method with NAME=VALUE options (several joined by "+") on top of its defaults; the
first row is the method with its defaults, and the full cache runs beside them as the reference. Records
are the short ones (context <= --max-context-tokens tokens) of the chosen families. Correct = any answer in
the output, case-insensitive (DESIGN §11). --resume reuses the rows already in --jsonl.
"""
from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bench_env import build_binary, command_line, cpu_model, loadavg  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dev.jsonl-format file")
    p.add_argument("--method", default="focus")
    p.add_argument("--variants", required=True, help='";"-separated option sets, e.g. "span=token;sinks=0+span=word"')
    p.add_argument("--ratios", default="8")
    p.add_argument("--families", default="", help="comma-separated families to keep (default: all)")
    p.add_argument("--max-context-tokens", type=int, default=2500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--jsonl", default=None, help="raw rows (default: --out with .jsonl)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--kvc-eval", default=build_binary("kvc-eval", ROOT))
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    cmdline = command_line(argv, ROOT)
    started = dt.datetime.now(dt.timezone.utc)
    families = {f for f in a.families.split(",") if f}
    lines = [l for l in pathlib.Path(a.data).read_text().splitlines() if l.strip()]
    records = [json.loads(l) for l in lines]
    keep = [l for l, r in zip(lines, records) if not families or r["family"] in families]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("\n".join(keep) + "\n")
    tokenized = subprocess.run([a.kvc_eval, "--data", f.name, "--tokenize-only"], check=True, capture_output=True,
                               text=True).stdout.splitlines()
    short = {r["id"] for r in map(json.loads, tokenized) if len(r["context_ids"]) <= a.max_context_tokens}
    keep = [l for l in keep if json.loads(l)["id"] in short]
    variants = [v for v in a.variants.split(";") if v]
    methods = ["none", a.method] + [f"{a.method}@{v}" for v in variants]
    jsonl = pathlib.Path(a.jsonl or pathlib.Path(a.out).with_suffix(".jsonl"))
    rows = [json.loads(l) for l in jsonl.read_text().splitlines()] if a.resume and jsonl.exists() else []
    have = {(r["id"], r["method"], r["ratio"]) for r in rows}
    ratios = [float(r) for r in a.ratios.split(",")]
    todo = [m for m in methods if any((json.loads(l)["id"], m, 1.0 if m == "none" else x) not in have
                                      for l in keep for x in ratios)]
    if todo:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write("\n".join(keep) + "\n")
        cmd = [a.kvc_eval, "--data", f.name, "--methods", ",".join(todo), "--ratios", a.ratios,
               "--max-context-tokens", str(a.max_context_tokens), "--long-methods", "", "--threads", str(a.threads)]
        print("[ablation] " + " ".join(cmd), file=sys.stderr, flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        fresh = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
        rows = [r for r in rows if (r["id"], r["method"], r["ratio"]) not in
                {(x["id"], x["method"], x["ratio"]) for x in fresh}] + fresh
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))

    ids = {json.loads(l)["id"] for l in keep}
    rows = [r for r in rows if r["id"] in ids and r["method"] in methods and "error" not in r]
    fams = list(dict.fromkeys(r["family"] for r in records if r["id"] in ids))
    agg: dict = collections.defaultdict(lambda: collections.Counter())
    for r in rows:
        k = (r["method"], r["ratio"])
        agg[k]["n"] += 1
        agg[k]["correct"] += bool(r["correct"])
        agg[k][r["family"]] += bool(r["correct"])
        agg[k]["kept"] += r.get("kept", 0)
    full = agg[("none", 1.0)]["correct"]
    L = [f"# Ablation of {a.method} ({', '.join(sorted(families)) or 'all families'})", "",
         f"- Command: `{cmdline}`",
         f"- Date: {started:%Y-%m-%d %H:%M} UTC; CPU: {cpu_model()}; {a.threads} threads; load {loadavg()}",
         f"- Data: `{a.data}`: {len(ids)} records with <= {a.max_context_tokens} context tokens"
         + (f" of the families {', '.join(sorted(families))}" if families else ""),
         f"- Each row is `{a.method}` with its defaults and the options shown changed; correct/total, and % of the "
         "full cache's correct answers. Accuracy only: compression time is measured side by side in "
         "bench/speed (bench/results/speed-cpu.md).", "",
         "| variant | ratio | " + " | ".join(fams) + " | all | % of full | mean kept |",
         "|---|---:|" + "---:|" * len(fams) + "---:|---:|---:|"]
    for m in methods:
        for x in ([1.0] if m == "none" else ratios):
            c = agg[(m, x)]
            if not c["n"]:
                continue
            label = "full cache" if m == "none" else ("defaults" if m == a.method else m.split("@", 1)[1])
            per = " | ".join(f"{c[f]}/{sum(1 for r in rows if r['method'] == m and r['ratio'] == x and r['family'] == f)}"
                             for f in fams)
            pct = f"{100 * c['correct'] / full:.0f}%" if full else "n/a"
            L.append(f"| {label} | {x:g} | {per} | {c['correct']}/{c['n']} | {pct} | {c['kept'] / c['n']:.0f} |")
    pathlib.Path(a.out).write_text("\n".join(L) + "\n")
    print("\n".join(L))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
