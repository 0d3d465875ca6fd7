#!/usr/bin/env bash
# `make demo`: the planner on the paper's case study, the simulator on the Kimi trace, then a live
# deployment (examples/local.toml: real processes, real tiny hybrid model, real KV over an emulated
# 1 Gbit/s link) replaying a slice of the same trace against each policy. Plots go to $OUT.
set -euo pipefail
PY=${PY:-.venv/bin/python}
OUT=${OUT:-out}
# The Kimi trace ships with the package (src/prfaas/data/traces); PRFAAS_TRACES_DIR overrides.
TRACE=kimi-conversation
export COLUMNS=${COLUMNS:-150}
POLICIES=homogeneous,naive,prfaas-static,prfaas

echo "== 1/3 planner: the paper's case study (Table 6), Figure 5 curves and a bandwidth sweep"
"$PY" -m prfaas plan --scenario paper --plot "$OUT/plan"

sim_load=(--trace "$TRACE")
live_load=(--trace "$TRACE" --limit 60 --tokens-per-block 16 --max-output-tokens 16 --duration 20)

echo "== 2/3 simulator: four policies on the same workload (paper hardware)"
"$PY" -m prfaas simulate "${sim_load[@]}" --compare "$POLICIES" --plot "$OUT/simulate"

echo "== 3/3 live: prfaas up (examples/local.toml) per policy, open-loop replay, one table"
"$PY" -m prfaas bench --compare "$POLICIES" --config examples/local.toml "${live_load[@]}" \
  --no-progress --plot "$OUT/live/compare.png"
echo "plots: $OUT/plan/*.png $OUT/simulate/*.png $OUT/live/compare.png"
