"""`prfaas sweep`: a grid of scenario fields x policies x seeds through the planner/simulator."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from prfaas.errors import UsageError


def add_parser(subparsers: Any, name: str) -> None:
    from prfaas.sweep.grid import AXES

    p = subparsers.add_parser(
        name,
        help="grids of scenario fields x policies x seeds (planner and/or simulator; local or Ray)",
        description=(
            "Run every combination of the --axis values through the planner (and the simulator "
            "with --simulate), on a local process pool or a Ray cluster (--ray). Axes: "
            + "; ".join(f"{k}: {v[1]}" for k, v in AXES.items())
            + ". Results: one table, --json FILE and --plot FILE (two-axis planner heat map)."
        ),
        epilog=(
            "examples: prfaas sweep --axis link_gbps=log:10:10000:7 --axis model=all "
            "--plot m.png | "
            "prfaas sweep --axis link_gbps=25,100 --axis kv_scale=0.5,1,2 --simulate --seeds 0,1 "
            "--requests 2000 | prfaas sweep --axis link_gbps=10,100 --ray auto"
        ),
    )
    p.add_argument("--scenario", default="paper", help="base scenario: built-in name or TOML")
    p.add_argument("--axis", action="append", default=[], metavar="FIELD=VALUES", help="an axis")
    p.add_argument("--simulate", action="store_true", help="also simulate each point")
    p.add_argument("--policies", default="homogeneous,prfaas", help="simulated policies")
    p.add_argument("--seeds", default="0", help="comma list of simulation seeds")
    p.add_argument("--load", type=float, default=0.8, help="rate / PrfaaS-PD Lambda_max (0.8)")
    p.add_argument("--requests", type=int, default=2000, help="requests per simulation")
    p.add_argument("--workers", type=int, default=0, help="local processes (default: CPUs)")
    p.add_argument("--ray", metavar="auto|ADDRESS", help="run on a Ray cluster instead")
    p.add_argument("--json", type=Path, metavar="FILE", help="write all rows as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE", help="heat map PNG (needs two axes)")
    p.set_defaults(run=run)


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag}: write integers separated by commas, got {text!r}") from None


def spec_from_args(args: argparse.Namespace) -> Any:
    from prfaas.planner import load_scenario
    from prfaas.policy.registry import get_policy
    from prfaas.sweep.grid import parse_axis, points
    from prfaas.sweep.run import SweepSpec

    if not args.axis:
        raise UsageError("sweep: give at least one --axis FIELD=V1,V2,...")
    load_scenario(args.scenario)  # a clear error before any worker starts
    policies = tuple(p.strip() for p in args.policies.split(","))
    for name in policies:
        get_policy(name)
    if not 0 < args.load <= 2 or args.requests < 1:
        raise UsageError("sweep: need 0 < --load <= 2 and --requests >= 1")
    axes = [parse_axis(a) for a in args.axis]
    return axes, SweepSpec(
        scenario=args.scenario,
        points=tuple(points(axes)),
        simulate=args.simulate,
        policies=policies,
        seeds=_ints(args.seeds, "--seeds"),
        load=args.load,
        requests=args.requests,
    )


def run(args: argparse.Namespace) -> int:
    from prfaas.sweep.output import flat_rows, heatmap, markdown, write_json
    from prfaas.sweep.run import default_workers, local_executor, ray_executor, run_sweep

    axes, spec = spec_from_args(args)
    varying = [a.name for a in axes if len(a.values) > 1]
    if args.plot and len(varying) != 2:
        raise UsageError("--plot draws a heat map: give exactly two axes with several values")
    ex = ray_executor(args.ray) if args.ray else local_executor(args.workers or default_workers())
    rows = run_sweep(spec, ex)
    names = [a.name for a in axes]
    flat = flat_rows(rows, names)
    sys.stdout.write(markdown(flat))
    if args.json:
        write_json(args.json, {"scenario": spec.scenario, "axes": names, "rows": rows})
    if args.plot:
        heatmap(rows, varying[0], varying[1], args.plot)
    return 0
