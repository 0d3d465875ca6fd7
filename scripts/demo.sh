#!/usr/bin/env bash
# `make demo`: the planner on the paper's case study, the simulator on the Kimi trace, then a live
# deployment (examples/local.toml: real processes, real tiny hybrid model, real KV over an emulated
# 1 Gbit/s link) replaying a slice of the same trace against each policy. Plots go to $OUT.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out}
TRACE="${PRFAAS_TRACES_DIR:-../shared/traces}/conversation_trace.jsonl"
export COLUMNS=${COLUMNS:-150}
POLICIES=homogeneous,naive,prfaas-static,prfaas

echo "== 1/3 planner: the paper's case study (Table 6), Figure 5 curves and a bandwidth sweep"
"$PY" -m prfaas plan --scenario paper --plot "$OUT/plan"

if [ -f "$TRACE" ]; then
  sim_load=(--trace "$TRACE")
  live_load=(--trace "$TRACE" --limit 60 --tokens-per-block 16 --max-output-tokens 16 --duration 20)
else
  echo "(Kimi trace not found at $TRACE: using the paper's synthetic workload instead)"
  sim_load=(--scenario paper --rate 2.5 --requests 5000)
  live_load=(--workload paper --rate 3 --length-scale 0.01 --max-output-tokens 16 --duration 20)
fi

echo "== 2/3 simulator: four policies on the same workload (paper hardware)"
"$PY" -m prfaas simulate "${sim_load[@]}" --compare "$POLICIES" --plot "$OUT/simulate"

echo "== 3/3 live: prfaas up (examples/local.toml) per policy, open-loop replay, one table"
"$PY" -m prfaas bench --compare "$POLICIES" --config examples/local.toml "${live_load[@]}" \
  --no-progress --plot "$OUT/live/compare.png"
echo "plots: $OUT/plan/*.png $OUT/simulate/*.png $OUT/live/compare.png"
