"""From a run configuration to results: plan the deployments, build requests, run each policy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from prfaas.core.request import RequestSpec
from prfaas.errors import UsageError
from prfaas.planner.plan import optimise
from prfaas.planner.result import PlanResult
from prfaas.planner.scenario import Scenario, load_scenario
from prfaas.policy.registry import DEPLOYMENT_OF, get_policy
from prfaas.sim.deployments import SimOptions, build_setup, deployment_summary
from prfaas.sim.engine import Simulation
from prfaas.sim.findmax import MaxRateCriterion, MaxRateResult, Probe, find_max_rate
from prfaas.sim.state import SimResult
from prfaas.sim.workloads import ArrivalSpec, synthetic_requests, trace_requests
from prfaas.workload.lengths import EmpiricalLengths
from prfaas.workload.trace import TraceData, read_trace
from prfaas.workload.traces import resolve_trace


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Everything `prfaas simulate` was asked to do."""

    scenario: str = "paper"
    policies: tuple[str, ...] = ("prfaas",)
    rate: float | None = None
    requests: int | None = None
    seed: int = 0
    arrivals: ArrivalSpec = field(default_factory=ArrivalSpec)
    trace: Path | None = None
    speedup: float = 1.0
    skip_bad_lines: bool = False
    options: SimOptions = field(default_factory=SimOptions)
    traces_dir: Path | None = None


@dataclass(slots=True)
class Prepared:
    scenario: Scenario
    plan: PlanResult
    trace: TraceData | None
    workload: dict[str, object]


def prepare(cfg: RunConfig) -> Prepared:
    """Load the scenario (re-fitted to the trace's lengths when replaying one) and plan it."""
    for name in cfg.policies:
        get_policy(name)
    scn = load_scenario(cfg.scenario, traces_dir=cfg.traces_dir)
    trace = None
    workload: dict[str, object] = {"seed": cfg.seed}
    if cfg.trace is not None:
        path = resolve_trace(cfg.trace, traces_dir=cfg.traces_dir)
        trace = read_trace(path, skip_bad_lines=cfg.skip_bad_lines)
        if not trace.requests:
            raise UsageError(f"trace {cfg.trace} holds no requests")
        rows = trace.requests[: cfg.requests] if cfg.requests else trace.requests
        lengths = EmpiricalLengths([r.input_length for r in rows], name=f"trace:{cfg.trace.name}")
        out_mean = float(np.mean([max(r.output_length, 1) for r in rows]))
        scn = replace(scn.with_lengths(lengths), output_tokens=out_mean)
        workload.update(
            kind="trace",
            trace=cfg.trace.name,
            speedup=cfg.speedup,
            requests=len(rows),
            skipped_lines=trace.skipped_lines,
            skipped_line_numbers=list(trace.skipped_line_numbers[:20]),
        )
    else:
        if cfg.rate is None or not cfg.rate > 0:
            raise UsageError("--rate R (req/s, > 0) is required for a synthetic workload")
        workload.update(
            kind=cfg.arrivals.kind,
            rate=cfg.rate,
            requests=cfg.requests or 5000,
            arrivals=_arrival_dict(cfg.arrivals),
        )
    workload["bandwidth_schedule"] = [list(w) for w in cfg.options.bandwidth.windows]
    return Prepared(scn, optimise(scn), trace, workload)


def _arrival_dict(a: ArrivalSpec) -> dict[str, object]:
    if a.kind == "onoff":
        return {"kind": a.kind, "on_s": a.on_s, "off_s": a.off_s}
    if a.kind == "gamma":
        return {"kind": a.kind, "cv": a.gamma_cv}
    return {"kind": a.kind}


def make_requests(
    cfg: RunConfig, prep: Prepared, rate: float | None = None, n: int | None = None
) -> list[RequestSpec]:
    scn = prep.scenario
    if prep.trace is not None:
        return trace_requests(prep.trace, scn.kv_size, speedup=cfg.speedup, limit=cfg.requests)
    rng = np.random.default_rng(cfg.seed)
    r = rate if rate is not None else cfg.rate
    assert r is not None
    return synthetic_requests(
        scn.lengths,
        round(scn.output_tokens),
        r,
        n or cfg.requests or 5000,
        cfg.arrivals,
        rng,
        scn.kv_size,
    )


def run_policies(
    cfg: RunConfig,
    prep: Prepared,
    progress: Callable[[str, float, float], None] | None = None,
) -> dict[str, SimResult]:
    """Simulate each policy on its own planned deployment over the same request list."""
    requests = make_requests(cfg, prep)
    horizon = requests[-1].arrival_s if requests else 0.0
    out: dict[str, SimResult] = {}
    for name in cfg.policies:
        setup = build_setup(prep.scenario, prep.plan, name, cfg.options)
        hook = None
        if progress is not None:

            def hook(now: float, name: str = name) -> None:
                progress(name, now, horizon)

        out[name] = Simulation(setup, requests, progress=hook).run()
    return out


def max_rates(
    cfg: RunConfig,
    prep: Prepared,
    crit: MaxRateCriterion,
    on_probe: Callable[[str, Probe], None] | None = None,
) -> dict[str, MaxRateResult]:
    """--find-max-rate for each policy; probes reuse one seed so rates see the same requests."""
    if prep.trace is not None:
        raise UsageError("--find-max-rate uses the scenario's synthetic workload, not --trace")
    n = cfg.requests or 20_000
    out: dict[str, MaxRateResult] = {}
    for name in cfg.policies:
        setup = build_setup(prep.scenario, prep.plan, name, cfg.options)
        start = cfg.rate or 1.0

        def mk(rate: float) -> Sequence[RequestSpec]:
            return make_requests(cfg, prep, rate, n)

        cb = (lambda p, name=name: on_probe(name, p)) if on_probe else None
        out[name] = find_max_rate(setup, mk, start, crit, cb)
    return out


def planner_lambda(prep: Prepared, policy: str) -> float:
    return prep.plan.deployments[DEPLOYMENT_OF[policy]].lambda_max


def deployment(prep: Prepared, policy: str) -> dict[str, int | None]:
    return deployment_summary(prep.plan, policy)
