"""`prfaas simulate`: discrete-event simulation of PrfaaS-PD, homogeneous and naive deployments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

POLICY_NAMES = "homogeneous, naive, prfaas-static, prfaas"


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="discrete-event simulation: queueing, bursts, prefix caches, bandwidth drops",
        description=(
            "Simulate requests through the planner's deployments with the shared routing "
            "policies (" + POLICY_NAMES + "). Each policy runs on the deployment planned for "
            "it: PrfaaS-PD for prfaas and prfaas-static, the best homogeneous split, naive. "
            "JSON keys: docs/simulate-json.md."
        ),
        epilog=(
            "examples: prfaas simulate --scenario paper --policy prfaas --rate 2 --requests 5000 | "
            "prfaas simulate --trace kimi-conversation --speedup 2 "
            "--compare homogeneous,naive,prfaas-static,prfaas | "
            "prfaas simulate --find-max-rate --compare homogeneous,naive,prfaas-static"
        ),
    )
    w = p.add_argument_group("workload")
    w.add_argument("--scenario", default="paper", help="planner scenario: built-in name or TOML")
    w.add_argument("--rate", type=float, help="mean arrival rate, req/s (synthetic workloads)")
    w.add_argument(
        "--requests",
        type=int,
        help="requests to simulate (default 5000; trace: all; --find-max-rate: 20000 per probe)",
    )
    w.add_argument("--seed", type=int, default=0, help="seed for lengths and arrivals (default 0)")
    w.add_argument(
        "--arrivals",
        default="uniform",
        choices=("uniform", "poisson", "onoff", "gamma"),
        help="arrival process (default uniform, the paper's)",
    )
    w.add_argument("--on-s", type=float, default=30.0, help="onoff: mean ON period, s")
    w.add_argument("--off-s", type=float, default=30.0, help="onoff: mean OFF period, s")
    w.add_argument("--gamma-cv", type=float, default=3.0, help="gamma: inter-arrival CV")
    w.add_argument("--trace", type=Path, help=(
        "replay a named trace (kimi-conversation, bundled) or a Mooncake-format .jsonl[.gz] file"
    ))
    w.add_argument("--speedup", type=float, default=1.0, help="trace time compression factor")
    w.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip (and count) malformed trace lines instead of failing",
    )
    w.add_argument(
        "--bandwidth-schedule",
        type=Path,
        metavar="FILE",
        help="JSON/TOML list of (start_s, end_s, factor) link-capacity windows",
    )
    pol = p.add_argument_group("policy")
    pol.add_argument("--policy", default="prfaas", help=f"one of: {POLICY_NAMES}")
    pol.add_argument("--compare", metavar="LIST", help="comma-separated policies, one table")
    pol.add_argument("--threshold", type=int, help="override the planner's threshold t (tokens)")
    pol.add_argument(
        "--rebalance-s",
        type=float,
        default=300.0,
        help="prfaas: long-timescale rebalance period, s (0 disables; default 300)",
    )
    sim = p.add_argument_group("simulator")
    sim.add_argument("--rtt-ms", type=float, default=10.0, help="inter-cluster RTT (default 10)")
    sim.add_argument(
        "--decode-kv-gib",
        type=float,
        default=64.0,
        help="KV memory per decode instance (default 64 GiB)",
    )
    sim.add_argument(
        "--cache-gib-per-node",
        type=float,
        default=512.0,
        help="prefix-cache pool per node (default 512 GiB host memory)",
    )
    sim.add_argument(
        "--chunk-tokens",
        type=int,
        default=0,
        help="batch queued prefills up to this many tokens (0 = one at a time)",
    )
    sim.add_argument(
        "--ttft-slo-s",
        type=float,
        default=30.0,
        help="TTFT SLO for attainment and --find-max-rate (default 30 s)",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--find-max-rate",
        action="store_true",
        help="largest rate with bounded queues and P90 TTFT <= --ttft-slo-s",
    )
    out.add_argument(
        "--backlog-fraction",
        type=float,
        default=0.01,
        help="--find-max-rate: max requests still waiting at the last arrival, "
        "as a fraction of --requests (default 0.01)",
    )
    out.add_argument(
        "--window",
        metavar="START:END",
        help="also report metrics for arrivals (and samples) in [START, END) s",
    )
    out.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run seeds SEED..SEED+K-1 and report the mean of the headline metrics",
    )
    out.add_argument("--json", action="store_true", help="print stable JSON only")
    out.add_argument(
        "--plot", type=Path, metavar="DIR", help="write TTFT CDF, egress and queue PNGs"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(run=run)


def _config(args: argparse.Namespace) -> Any:
    from prfaas.errors import UsageError
    from prfaas.sim.bandwidth import BandwidthSchedule, load_schedule
    from prfaas.sim.deployments import SimOptions
    from prfaas.sim.runner import RunConfig
    from prfaas.sim.workloads import ArrivalSpec

    policies = tuple(s.strip() for s in (args.compare or args.policy).split(",") if s.strip())
    if not policies:
        raise UsageError("--compare needs at least one policy name")
    if args.requests is not None and args.requests < 1:
        raise UsageError(f"--requests must be >= 1, got {args.requests}")
    schedule = BandwidthSchedule()
    if args.bandwidth_schedule is not None:
        schedule = load_schedule(args.bandwidth_schedule)
    opts = SimOptions(
        rtt_ms=args.rtt_ms,
        decode_kv_gib=args.decode_kv_gib,
        cache_gib_per_node=args.cache_gib_per_node,
        chunk_tokens=args.chunk_tokens,
        ttft_slo_s=args.ttft_slo_s,
        bandwidth=schedule,
        rebalance_period_s=args.rebalance_s or None,
        threshold_tokens=args.threshold,
    )
    arrivals = ArrivalSpec(args.arrivals, on_s=args.on_s, off_s=args.off_s, gamma_cv=args.gamma_cv)
    return RunConfig(
        scenario=args.scenario,
        policies=policies,
        rate=args.rate,
        requests=args.requests,
        seed=args.seed,
        arrivals=arrivals,
        trace=args.trace,
        speedup=args.speedup,
        skip_bad_lines=args.skip_bad_lines,
        options=opts,
        traces_dir=getattr(args, "traces_dir", None),
    )


def run(args: argparse.Namespace) -> int:
    from prfaas.sim import report
    from prfaas.sim.runner import prepare, run_policies

    cfg = _config(args)
    if args.find_max_rate:
        return _find_max_rate(args, cfg)
    between = _window(args.window)
    if args.seeds != 1:
        return _many_seeds(args, cfg, between)
    prep = prepare(cfg)
    with _Progress(enabled=not args.no_progress) as bar:
        results = run_policies(cfg, prep, progress=bar.update)
    doc = report.run_doc(prep, results, between)
    if args.json:
        print(report.dumps(doc))
    else:
        _print_human(doc, results)
    if args.plot is not None:
        from prfaas.sim.plots import write_plots

        for path in write_plots(results, args.plot):
            print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _window(text: str | None) -> tuple[float, float] | None:
    from prfaas.errors import UsageError

    if text is None:
        return None
    try:
        start, end = (float(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--window must be START:END in seconds, got {text!r}") from None
    if not 0 <= start < end:
        raise UsageError(f"--window needs 0 <= START < END, got {text!r}")
    return start, end


def _many_seeds(args: argparse.Namespace, cfg: Any, between: tuple[float, float] | None) -> int:
    from dataclasses import replace

    from prfaas.errors import UsageError
    from prfaas.sim import report
    from prfaas.sim.runner import prepare, run_policies

    if args.seeds < 1 or args.plot is not None:
        raise UsageError("--seeds needs K >= 1 and cannot be combined with --plot")
    seeds = list(range(cfg.seed, cfg.seed + args.seeds))
    docs = []
    for seed in seeds:
        cfg_s = replace(cfg, seed=seed)
        prep = prepare(cfg_s)
        docs.append(report.run_doc(prep, run_policies(cfg_s, prep), between))
    doc = report.seeds_doc(seeds, docs)
    print(report.dumps(doc) if args.json else report.seeds_table(doc))
    return 0


def _find_max_rate(args: argparse.Namespace, cfg: Any) -> int:
    from dataclasses import replace

    from prfaas.sim import report
    from prfaas.sim.findmax import MaxRateCriterion
    from prfaas.sim.runner import max_rates, prepare

    crit = MaxRateCriterion(backlog_fraction=args.backlog_fraction, ttft_slo_s=args.ttft_slo_s)
    prep = prepare(replace(cfg, rate=cfg.rate or 1.0))
    verbose = not args.json and not args.no_progress

    def on_probe(name: str, probe: Any) -> None:
        if verbose:
            state = "bounded" if probe.bounded else "UNBOUNDED"
            print(
                f"  {name}: {probe.rate:.4f} req/s {state}, backlog {probe.backlog}, "
                f"P90 TTFT {probe.p90_ttft_s:.1f} s",
                file=sys.stderr,
            )

    found = max_rates(cfg, prep, crit, on_probe)
    doc = report.maxrate_doc(cfg, prep, found, crit)
    print(report.dumps(doc) if args.json else report.maxrate_table(doc))
    return 0


def _print_human(doc: dict[str, Any], results: dict[str, Any]) -> None:
    from prfaas.sim import report

    w = doc["workload"]
    if w["kind"] == "trace":
        what = f"trace {w['trace']} x{w['speedup']:g}, {w['requests']:,} requests"
        if w["skipped_lines"]:
            what += f" ({w['skipped_lines']} bad lines skipped)"
    else:
        what = f"{w['kind']} arrivals at {w['rate']:g} req/s, {w['requests']:,} requests"
    if w["bandwidth_schedule"]:
        what += f", bandwidth schedule {w['bandwidth_schedule']}"
    print(f"scenario {doc['scenario']}: {what}, seed {w['seed']}")
    print(report.table(doc))
    for name, res in results.items():
        rate = res.events / res.wall_s if res.wall_s > 0 else 0.0
        p = doc["policies"][name]
        note = f"; {len(p['rebalances'])} rebalances" if p["rebalances"] else ""
        print(
            f"{name}: {res.events:,} events in {res.wall_s:.2f} s ({rate:,.0f} events/s), "
            f"simulated {res.sim_end_s:,.0f} s{note}"
        )


class _Progress:
    """A rich progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import Progress

            self._bar = Progress(transient=True)
            self._bar.start()
        return self

    def update(self, name: str, now: float, horizon: float) -> None:
        if self._bar is None:
            return
        if name not in self._tasks:
            self._tasks[name] = self._bar.add_task(f"simulating {name}", total=max(horizon, 1e-9))
        self._bar.update(self._tasks[name], completed=min(now, horizon))

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
