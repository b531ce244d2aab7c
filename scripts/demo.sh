#!/usr/bin/env bash
# The main job end to end, on the embedded default: installs the dependencies, builds kvc-server and the kvc
# CLI, starts the server with no model or store flags (the packaged SmolLM2-135M-Instruct and a file store),
# asks a question about a long sample document through `kvc ask` (compress with Finch, then generate from
# the stored cache), prints the answer, the compression ratio and the timings, and stops the server with
# SIGTERM.
#
#   scripts/demo.sh                          the sample document and question below
#   scripts/demo.sh FILE "QUESTION" [RATIO]  your own document
#
# Environment: KVC_BUILD_DIR (default build/), KVC_DEMO_PORT (default: a free port), KVC_DEMO_DATA (the
# store directory; default: a fresh temporary one, removed at the end).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KVC_BUILD_DIR:-$ROOT/build}"
DOC="${1:-$ROOT/docs/samples/tessaly-valley-report.md}"
QUESTION="${2:-Who was the chief engineer of the Tessaly Valley Water Project?}"
RATIO="${3:-2}"

bash "$ROOT/scripts/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$BUILD" -j2 --target kvc-server kvc

PORT="${KVC_DEMO_PORT:-$("$ROOT/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
DATA="${KVC_DEMO_DATA:-}"
CLEAN_DATA=""
if [[ -z "$DATA" ]]; then
  DATA="$(mktemp -d)"
  CLEAN_DATA="$DATA"
fi
LOG="$(mktemp)"

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
  fi
  [[ -n "$CLEAN_DATA" ]] && rm -rf "$CLEAN_DATA"
  rm -f "$LOG"
}
trap stop_server EXIT

echo "demo: starting kvc-server on 127.0.0.1:$PORT (store file://$DATA)"
"$BUILD/bin/kvc-server" --listen "127.0.0.1:$PORT" --store "file://$DATA" --metrics-listen "" > "$LOG" 2>&1 &
SERVER_PID=$!

KVC=("$BUILD/bin/kvc" --server "127.0.0.1:$PORT")
if ! "${KVC[@]}" health --wait 120 > /dev/null; then
  echo "demo: kvc-server did not become ready; its log:"
  cat "$LOG"
  exit 1
fi
"${KVC[@]}" model | sed -n 1,4p

echo
echo "demo: document: ${DOC#"$ROOT"/} ($(wc -w < "$DOC") words)"
echo "demo: question: $QUESTION"
echo "demo: answer (the default method, focus, ratio $RATIO):"
"${KVC[@]}" ask "$DOC" --query "$QUESTION" --ratio "$RATIO" --max-tokens 48
echo

# A graceful stop: the server drains and exits 0.
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then
  echo "demo: kvc-server stopped cleanly"
else
  echo "demo: kvc-server exited with status $?; its log:"
  cat "$LOG"
  exit 1
fi
SERVER_PID=""
