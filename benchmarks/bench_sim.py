"""Simulator speed: the full Kimi trace per policy, and 100,000 paper-workload requests.

    .venv/bin/python benchmarks/bench_sim.py [--trace PATH] [--requests 100000] [--repeat 3]

Prints a markdown table (docs/benchmarks.md). Targets (issue 3): the full trace in <= 10 s wall,
100k paper requests in <= 30 s wall. Wall time is the median of --repeat runs; CPU time is the
process time of the same runs, which other load on the machine does not inflate.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prfaas.sim.deployments import build_setup
from prfaas.sim.engine import Simulation
from prfaas.sim.runner import RunConfig, make_requests, prepare
from prfaas.sim.workloads import ArrivalSpec
from prfaas.workload.traces import resolve_trace

POLICIES = ("homogeneous", "naive", "prfaas-static", "prfaas")


def measure(cfg: RunConfig, policy: str, repeat: int) -> dict[str, float]:
    """Median wall/CPU seconds of build-requests + simulate + metrics for one policy."""
    walls, cpus, sims = [], [], []
    events = 0
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        prep = prepare(cfg)
        requests = make_requests(cfg, prep)
        setup = build_setup(prep.scenario, prep.plan, policy, cfg.options)
        s0 = time.perf_counter()
        result = Simulation(setup, requests).run()
        sims.append(time.perf_counter() - s0)
        result.metrics()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        events = result.events
    sim_s = statistics.median(sims)
    return {
        "requests": len(requests),
        "events": events,
        "wall_s": statistics.median(walls),
        "cpu_s": statistics.median(cpus),
        "sim_s": sim_s,
        "events_per_s": events / sim_s,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=Path("kimi-conversation"),
                    help="a named trace or a trace file (default: the bundled Kimi trace)")
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=3.0, help="paper workload rate, req/s")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    cfg = RunConfig(policies=POLICIES, trace=resolve_trace(args.trace))
    rows += [("Kimi trace (full)", p, measure(cfg, p, args.repeat)) for p in POLICIES]
    paper = RunConfig(
        policies=POLICIES, rate=args.rate, requests=args.requests, arrivals=ArrivalSpec("poisson")
    )
    rows += [
        (
            f"paper, {args.requests:,} req, Poisson {args.rate:g}/s",
            p,
            measure(paper, p, args.repeat),
        )
        for p in ("prfaas", "homogeneous")
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; median of {args.repeat} runs\n"
    )
    print("| workload | policy | requests | events | wall s (total) | CPU s | sim s | events/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, policy, r in rows:
        print(
            f"| {name} | {policy} | {r['requests']:,} | {r['events']:,} | {r['wall_s']:.2f} | "
            f"{r['cpu_s']:.2f} | {r['sim_s']:.2f} | {r['events_per_s']:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
