"""Simulator at fleet scale: the 100x paper scenario against the paper scenario, per request.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fleet_sim.py [--requests 1000000]

Runs what `prfaas simulate --policy prfaas --arrivals poisson --json` runs (plan, build the
requests, simulate, metrics and the JSON document) on examples/paper-100x.toml at 250 req/s, and
on the paper scenario (12 instances) at 2.5 req/s with a tenth of the requests as the baseline
measured in the same process. Prints wall and CPU seconds, events, events per CPU-second and the
CPU microseconds per request of both, and their ratio (the fleet's extra cost per request).
Acceptance (issue 15): 1M requests on the 100x scenario in <= 120 s on one core.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prfaas.sim import report
from prfaas.sim.deployments import SimOptions
from prfaas.sim.runner import RunConfig, prepare, run_policies
from prfaas.sim.workloads import ArrivalSpec

ROOT = Path(__file__).resolve().parents[1]


def measure(scenario: str, rate: float, requests: int) -> dict[str, Any]:
    cfg = RunConfig(
        scenario=scenario,
        policies=("prfaas",),
        rate=rate,
        requests=requests,
        arrivals=ArrivalSpec("poisson"),
        options=SimOptions(),
    )
    w0, c0 = time.perf_counter(), time.process_time()
    prep = prepare(cfg)
    results = run_policies(cfg, prep)
    text = report.dumps(report.run_doc(prep, results))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    res = results["prfaas"]
    finished = res.metrics()["requests"]["finished"]  # type: ignore[index]
    return {
        "requests": requests,
        "finished": finished,
        "events": res.events,
        "wall_s": wall,
        "cpu_s": cpu,
        "us_per_request": 1e6 * cpu / requests,
        "events_per_cpu_s": res.events / cpu,
        "json_bytes": len(text),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    args = ap.parse_args()
    base = measure("paper", 2.5, max(args.requests // 10, 1000))
    fleet = measure(str(ROOT / "examples" / "paper-100x.toml"), 250.0, args.requests)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}\n"
    )
    print(
        "| scenario | requests | finished | events | wall s | CPU s | µs/req (CPU) | events/CPU-s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in (("paper (12 instances), 2.5/s", base), ("paper-100x (1,200), 250/s", fleet)):
        print(
            f"| {name} | {r['requests']:,} | {r['finished']:,} | {r['events']:,} | "
            f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['us_per_request']:.0f} | "
            f"{r['events_per_cpu_s']:,.0f} |"
        )
    ratio = fleet["us_per_request"] / base["us_per_request"]
    print(f"\nper-request CPU cost, 100x fleet / paper: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
