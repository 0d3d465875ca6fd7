"""`prfaas` against the other policies in the simulator: mean / P90 / P99 TTFT, same requests.

    .venv/bin/python benchmarks/prfaas_vs_policies.py [--trace kimi-conversation] [--requests 6000]

Paper workload at 20/50/80/95% of the planner's Λ_max for the `prfaas` deployment, and (with
--trace) a Mooncake-format trace at speedups 1, 1.5 and 2. Prints a markdown table: each cell is
prfaas / best other policy; `ok` when prfaas is within 2% of every other policy on all three
(docs/results.md). Every policy runs on its own planned deployment, with the same request list.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = "homogeneous,naive,prfaas-static,prfaas"
LOADS = (0.2, 0.5, 0.8, 0.95)
SPEEDUPS = (1.0, 1.5, 2.0)
STATS = ("mean", "p90", "p99")
TOLERANCE = 0.02


def simulate(args: list[str]) -> dict[str, dict[str, float]]:
    cmd = [sys.executable, "-m", "prfaas", "simulate", "--compare", POLICIES, "--json",
           "--no-progress", *args]
    env = {"PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    doc = json.loads(out.stdout)
    return {name: p["metrics"]["ttft_s"] for name, p in doc["policies"].items()}


def lambda_max() -> float:
    cmd = [sys.executable, "-m", "prfaas", "plan", "--scenario", "paper", "--json"]
    env = {"PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return float(json.loads(out.stdout)["deployments"]["prfaas"]["lambda_max"])


def row(label: str, ttft: dict[str, dict[str, float]]) -> str:
    me = ttft["prfaas"]
    cells, ok = [], True
    for stat in STATS:
        best = min(v[stat] for k, v in ttft.items() if k != "prfaas")
        ok &= me[stat] <= best * (1 + TOLERANCE)
        cells.append(f"{me[stat]:.2f} / {best:.2f}")
    return f"| {label} | " + " | ".join(cells) + f" | {'ok' if ok else 'WORSE'} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path)
    ap.add_argument("--requests", type=int, default=6000)
    args = ap.parse_args()
    lam = lambda_max()
    print("| setting | mean TTFT s (prfaas / best other) | P90 | P99 | within 2% |")
    print("|---|---|---|---|---|")
    for f in LOADS:
        rate = f * lam
        ttft = simulate(["--rate", f"{rate:.4f}", "--requests", str(args.requests)])
        print(row(f"paper, {f:.0%} of Λ_max ({rate:.2f} req/s)", ttft), flush=True)
    if args.trace is not None:
        for s in SPEEDUPS:
            ttft = simulate(["--trace", str(args.trace), "--speedup", str(s)])
            print(row(f"trace x{s:g}", ttft), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
