#!/usr/bin/env bash
# Builds kvc and runs every test a CPU machine can run (gpu-labelled tests skip themselves without CUDA).
# Exits non-zero on any failure. CI runs this through .ci/run.
#
#   scripts/test.sh               everything
#   scripts/test.sh -L unit       extra arguments go to ctest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${KVC_BUILD_DIR:-$ROOT/build}"

bash "$ROOT/scripts/setup.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build "$BUILD" -j2
cd "$BUILD"
ctest --output-on-failure -j2 "$@"
