#!/usr/bin/env bash
# Prefill speed, side by side: kvc (kvc-bench-prefill) vs transformers vs llama.cpp on the same token ids.
# Installs llama-cpp-python (pinned by the `# bench:` line of scripts/requirements.txt) into the venv when it
# is missing -- that compiles llama.cpp from source and takes several minutes the first time -- then runs
# prefill_bench.py with the venv's python. All arguments are passed through; see prefill_bench.py --help.
#   bench/prefill/run.sh                                   # 512,2048,4096 tokens, 2 threads, 3 repeats
#   bench/prefill/run.sh --tokens 512 --repeats 1 --skip ours --out /tmp/x.md
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REQS="$ROOT/scripts/requirements.txt"
VENV="${KVC_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]]; then
  echo "bench/prefill: no venv at $VENV; run scripts/setup.sh first" >&2
  exit 1
fi

if ! "$PY" -c 'import llama_cpp' 2>/dev/null; then
  PIN="$(sed -n 's/^# bench: *//p' "$REQS" | grep -i '^llama-cpp-python' | head -n1 || true)"
  if [[ -z "$PIN" ]]; then
    echo "bench/prefill: no '# bench: llama-cpp-python==...' line in $REQS" >&2
    exit 1
  fi
  JOBS="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
  echo "bench/prefill: installing $PIN (compiles llama.cpp with $JOBS jobs; takes a few minutes)" >&2
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON}" MAKEFLAGS="-j$JOBS" CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
    "$VENV/bin/pip" install -q "$PIN"
fi

exec "$PY" "$ROOT/bench/prefill/prefill_bench.py" "$@"
