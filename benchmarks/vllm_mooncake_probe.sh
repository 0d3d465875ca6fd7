#!/usr/bin/env bash
# Can vLLM's MooncakeConnector (mooncake-transfer-engine-non-cuda, TCP) run on this CPU machine?
# Starts one vLLM instance on the tiny hybrid with it and prints how that ended (the comparison of
# transfer times against PrfaasConnector needs a pair of these to come up).
# Usage: bash benchmarks/vllm_mooncake_probe.sh MODEL_DIR   (needs mooncake-transfer-engine-non-cuda
#   importable from .venv-vllm: `pip install --no-deps --target DIR ...` plus PYTHONPATH=DIR, and
#   libibverbs.so.1 / libnl-route-3.so.200 on LD_LIBRARY_PATH; docs/benchmarks.md has the details)
set -uo pipefail
MODEL=${1:?model dir (python -m prfaas.integrations.vllm.tiny_model DIR)}
VPY=${VLLM_PY:-.venv-vllm/bin/python}
LOG=${LOG:-out/mooncake-probe.log}
mkdir -p "$(dirname "$LOG")"
"$VPY" -c "import mooncake.engine" 2>/dev/null || { echo "mooncake-transfer-engine not installed"; exit 2; }
KVT='{"kv_connector":"MooncakeConnector","kv_role":"kv_producer","kv_connector_extra_config":{"mooncake_protocol":"tcp","num_workers":2}}'
VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind setsid "$VPY" -m vllm.entrypoints.openai.api_server \
  --model "$MODEL" --dtype bfloat16 --enforce-eager --max-model-len 4096 --host 127.0.0.1 \
  --port 18190 --no-disable-hybrid-kv-cache-manager --kv-transfer-config "$KVT" > "$LOG" 2>&1 &
PID=$!
for _ in $(seq 300); do
  if curl -sf http://127.0.0.1:18190/health >/dev/null; then echo "MooncakeConnector: instance ready"; break; fi
  if ! kill -0 $PID 2>/dev/null; then echo "MooncakeConnector: instance exited"; break; fi
  sleep 1
done
kill -- -$PID 2>/dev/null; sleep 2; kill -9 -- -$PID 2>/dev/null
grep -E "Error|error:|Exception" "$LOG" | grep -v "ulimit" | tail -n 5
