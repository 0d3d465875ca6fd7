#!/usr/bin/env bash
# make vllm-demo: three vLLM instances on a tiny hybrid + the prfaas router, openai-client traffic.
set -euo pipefail
PY=${PY:-.venv/bin/python}
VLLM_PY=${VLLM_PY:-.venv-vllm/bin/python}
OUT=${OUT:-out}
PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m prfaas.integrations.vllm.demo \
  --vllm-python "$VLLM_PY" --out "$OUT/vllm-demo"
