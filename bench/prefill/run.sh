#!/usr/bin/env bash
# Prefill speed, side by side: kvc (kvc-bench-prefill) vs transformers vs llama.cpp on the same token ids.
# llama-cpp-python comes from scripts/setup.sh (built for this CPU); this runs prefill_bench.py with the
# venv's python. All arguments are passed through; see prefill_bench.py --help.
#   bench/prefill/run.sh                                   # 512,2048,4096 tokens, 2 threads, 3 repeats
#   bench/prefill/run.sh --tokens 512 --repeats 1 --skip ours --out /tmp/x.md
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${KVC_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
  echo "bench/prefill: no venv at $VENV; run scripts/setup.sh first" >&2
  exit 1
fi

if ! "$PY" -c 'import llama_cpp' 2>/dev/null; then
  echo "bench/prefill: llama_cpp is missing from $VENV; scripts/setup.sh builds it" >&2
  exit 1
fi

exec "$PY" "$ROOT/bench/prefill/prefill_bench.py" "$@"
