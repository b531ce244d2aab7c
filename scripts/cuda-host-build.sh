#!/usr/bin/env bash
# Builds kvc on a CUDA host whose image has torch 2.11 (CUDA), nvcc, cmake and ninja but not kvc's C++
# libraries: unpacks the Debian 12 .deb files of scripts/cuda-host-debs.sh into BUILD/deps, points CMake
# at that prefix and at the host's Python (the one with torch), and builds. CUDA code is compiled when nvcc
# matches torch's CUDA version (cmake/kvc_dependencies.cmake).
#
#   scripts/cuda-host-build.sh DEBS_DIR BUILD_DIR [GGUF] [-- cmake --build arguments, e.g. --target kvc-eval]
#
# Afterwards `source BUILD_DIR/env.sh` sets PATH and LD_LIBRARY_PATH for running the binaries and ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEBS="$(cd "${1:?usage: cuda-host-build.sh DEBS_DIR BUILD_DIR [GGUF] [-- build args]}" && pwd)"
BUILD="$(mkdir -p "${2:?BUILD_DIR}" && cd "$2" && pwd)"
shift 2
GGUF=""
if [[ $# -gt 0 && "$1" != "--" ]]; then GGUF="$1"; shift; fi
[[ "${1:-}" == "--" ]] && shift
PREFIX="$BUILD/deps"
ARCH=x86_64-linux-gnu
LIB="$PREFIX/usr/lib/$ARCH"

if [[ ! -f "$PREFIX/.unpacked" ]]; then
  rm -rf "$PREFIX"
  for f in "$DEBS"/*.deb; do dpkg-deb -x "$f" "$PREFIX"; done
  # Debian 12 still ships some libraries under /lib; one prefix directory keeps the -dev symlinks valid.
  if [[ -d "$PREFIX/lib/$ARCH" ]]; then
    mkdir -p "$LIB"
    cp -a "$PREFIX/lib/$ARCH/." "$LIB/"
    rm -rf "$PREFIX/lib"
  fi
  # Absolute symlinks (libz.so -> /lib/...) would leave the prefix: point them at the file beside them.
  find "$PREFIX" -type l -lname '/*' | while read -r l; do
    t="$(basename "$(readlink "$l")")"
    [[ -e "$(dirname "$l")/$t" ]] && ln -sfn "$t" "$l"
  done
  touch "$PREFIX/.unpacked"
fi

PYTHON="${KVC_PYTHON:-$(command -v python3)}"
TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
cat > "$BUILD/env.sh" <<ENV
export PATH="$PREFIX/usr/bin:\$PATH"
export LD_LIBRARY_PATH="$LIB:$TORCH_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$LIB/pkgconfig:$PREFIX/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$PREFIX"
ENV
# shellcheck source=/dev/null
source "$BUILD/env.sh"

args=(-S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_PYTHON="$PYTHON"
      -DKVC_VENV="$(dirname "$(dirname "$PYTHON")")" -DCMAKE_PREFIX_PATH="$PREFIX/usr"
      -DPKG_CONFIG_EXECUTABLE="$PREFIX/usr/bin/pkgconf"
      "-DCMAKE_CXX_FLAGS=-isystem $PREFIX/usr/include/$ARCH" "-DCMAKE_C_FLAGS=-isystem $PREFIX/usr/include/$ARCH")
[[ -n "$GGUF" ]] && args+=(-DKVC_SMOLLM2_GGUF="$GGUF")
cmake "${args[@]}"
cmake --build "$BUILD" -j"$(nproc)" "$@"
