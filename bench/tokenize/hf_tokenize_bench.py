#!/usr/bin/env python3
"""Single-thread encode speed of Hugging Face `tokenizers` on the dev set, the baseline for kvc's tokenizer.

Usage: hf_tokenize_bench.py --dev ../shared/eval/dev.jsonl --tokenizer DIR/smollm2/tokenizer.json [--repeats 3]

Encodes every record's "context" one text at a time (add_special_tokens=False, special tokens not split out of
the text, i.e. the library's default), once untimed as a warm-up and then --repeats timed passes. Prints one JSON
line: {"engine": "hf-tokenizers", "bytes": B, "tokens": T, "median_s": s, "mb_per_s": x}
where B is the total UTF-8 size of the contexts, T the tokens of one pass, median_s the median wall time of a
pass and mb_per_s = B / 1e6 / median_s (MB = 10^6 bytes).
"""
import os

# must be set before tokenizers is imported: no rayon thread pool, no parallel batch paths
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", required=True)
    ap.add_argument("--tokenizer", required=True, help="path to a tokenizer.json")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(args.tokenizer)
    texts = []
    with open(args.dev, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                ctx = json.loads(line).get("context")
                if ctx:
                    texts.append(ctx)
    if not texts:
        sys.exit(f"hf_tokenize_bench: no contexts in {args.dev}")
    total_bytes = sum(len(t.encode("utf-8")) for t in texts)

    def one_pass():
        n = 0
        for t in texts:
            n += len(tok.encode(t, add_special_tokens=False).ids)
        return n

    tokens = one_pass()  # warm-up (caches, page faults); also gives the token count
    times = []
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        n = one_pass()
        times.append(time.perf_counter() - t0)
        assert n == tokens
    median = statistics.median(times)
    print(json.dumps({"engine": "hf-tokenizers", "bytes": total_bytes, "tokens": tokens,
                      "median_s": round(median, 4), "mb_per_s": round(total_bytes / 1e6 / median, 3)}))


if __name__ == "__main__":
    main()
