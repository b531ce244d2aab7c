#!/usr/bin/env bash
# Builds kvc and runs every test a CPU machine can run (gpu-labelled tests skip themselves without CUDA),
# and the libFuzzer targets for KVC_FUZZ_SECONDS each (default 60; 0 skips them). Exits non-zero on any
# failure. CI runs this through .ci/run.
#
#   scripts/test.sh               everything (the `stop` tests twice first, then the whole suite)
#   scripts/test.sh -L unit       extra arguments go to ctest (and the extra `stop` runs are skipped)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KVC_BUILD_DIR:-$ROOT/build}"
FUZZ_SECONDS="${KVC_FUZZ_SECONDS:-60}"

bash "$ROOT/scripts/setup.sh"
# Compiler caching that does not depend on where the checkout lies, so that a fresh clone of the same
# sources (CI's) reuses the objects an earlier build on this machine made.
export CCACHE_BASEDIR="$ROOT" CCACHE_NOHASHDIR=true
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j2

if [[ "$FUZZ_SECONDS" != 0 ]]; then
  # Fuzz targets need clang's libFuzzer and instrument everything, so they get their own build tree.
  FUZZ_BUILD="$BUILD-fuzz"
  cmake -S "$ROOT" -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVC_FUZZ=ON \
    -DKVC_BUILD_BENCH=OFF -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ > /dev/null
  cmake --build "$FUZZ_BUILD" -j2 --target tokenizer_fuzz kvc_reader_fuzz
  # run_fuzz TARGET MAX_LEN: FUZZ_SECONDS of TARGET on its corpus directory; fails the run on a finding.
  run_fuzz() {
    local target="$1" max_len="$2" log="$FUZZ_BUILD/$1.log"
    echo "fuzz: $target for ${FUZZ_SECONDS}s"
    if ! "$FUZZ_BUILD/bin/$target" -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$FUZZ_BUILD/artifacts/" "$FUZZ_BUILD/corpus/$target" > "$log" 2>&1; then
      tail -n 60 "$log"
      echo "fuzz: $target FAILED (log: $log)"
      exit 1
    fi
    grep -E "^Done " "$log"
  }
  mkdir -p "$FUZZ_BUILD/corpus/tokenizer_fuzz" "$FUZZ_BUILD/corpus/kvc_reader_fuzz" "$FUZZ_BUILD/artifacts"
  printf 'Hello world 12345' > "$FUZZ_BUILD/corpus/tokenizer_fuzz/seed-ascii"
  printf '<|im_start|>user\nCaf\xc3\xa9 \xf0\x9f\x98\x80<|im_end|>' > "$FUZZ_BUILD/corpus/tokenizer_fuzz/seed-special"
  cp "$ROOT"/tests/testdata/kvc/*.kvc "$FUZZ_BUILD/corpus/kvc_reader_fuzz/"
  run_fuzz tokenizer_fuzz 4096
  run_fuzz kvc_reader_fuzz 8192
fi

cd "$BUILD"
if (($# == 0)); then
  # The stop tests (label `stop`: cancels, deadlines and SIGTERM in every phase of a call, held there by the
  # server's test pause points) must pass every time, so they run twice here and once more in the whole
  # suite: a flaky row shows up in CI rather than on a user's machine.
  ctest --output-on-failure -j2 -L stop --repeat until-fail:2
fi
# Last, so that ctest's summary line closes the output.
ctest --output-on-failure -j2 "$@"
