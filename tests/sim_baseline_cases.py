"""The simulator runs whose metrics are pinned in tests/data/sim_baseline.json (issue 15)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from prfaas.planner import load_scenario, optimise
from prfaas.sim.bandwidth import BandwidthSchedule
from prfaas.sim.deployments import SimOptions, build_setup
from prfaas.sim.engine import Simulation
from prfaas.sim.runner import RunConfig, make_requests, prepare
from prfaas.sim.workloads import ArrivalSpec

DATA = Path(__file__).parent / "data"
BASELINE = DATA / "sim_baseline.json"
# No rebalancing: these pin routing and the simulator, not the long-timescale controller.
PLAIN = SimOptions(rebalance_period_s=None)
DROP = SimOptions(bandwidth=BandwidthSchedule(((100.0, 200.0, 0.1),)), rebalance_period_s=None)


def _result_doc(result: Any) -> dict[str, Any]:
    return {
        "events": result.events,
        "metrics": result.metrics(),
        "final_deployment": result.final_deployment,
        "rebalances": len(result.rebalances),
    }


def _run_cfg(cfg: RunConfig) -> dict[str, Any]:
    prep = prepare(cfg)
    requests = make_requests(cfg, prep)
    out = {}
    for policy in cfg.policies:
        setup = build_setup(prep.scenario, prep.plan, policy, cfg.options)
        out[policy] = _result_doc(Simulation(setup, requests).run())
    return out


def _scaled(factor: int, policies: tuple[str, ...], rate: float, n: int) -> dict[str, Any]:
    """The paper scenario with instance counts and link multiplied (a fleet with many ties)."""
    base = load_scenario("paper")
    scn = replace(
        base,
        prfaas_instances=base.prfaas_instances * factor,
        pd_instances=base.pd_instances * factor,
        homogeneous_instances=base.homogeneous_instances * factor,
        link_gbps=base.link_gbps * factor,
    )
    plan = optimise(scn)
    cfg = RunConfig(
        policies=policies, rate=rate, requests=n, seed=1, arrivals=ArrivalSpec("poisson")
    )
    prep = prepare(RunConfig(policies=policies, rate=rate, requests=n, seed=1))
    prep.scenario, prep.plan = scn, plan
    requests = make_requests(cfg, prep)
    out = {}
    for policy in policies:
        setup = build_setup(scn, plan, policy, PLAIN)
        out[policy] = _result_doc(Simulation(setup, requests).run())
    return out


def cases() -> dict[str, dict[str, Any]]:
    """Every pinned case: name -> policy -> {events, metrics, ...}."""
    policies = ("homogeneous", "naive", "prfaas-static", "prfaas")
    return {
        "paper-poisson": _run_cfg(
            RunConfig(
                policies=policies,
                rate=2.5,
                requests=1500,
                seed=0,
                arrivals=ArrivalSpec("poisson"),
                options=PLAIN,
            )
        ),
        "paper-drop": _run_cfg(
            RunConfig(policies=("prfaas",), rate=2.8, requests=1200, seed=2, options=DROP)
        ),
        "mini-trace": _run_cfg(
            RunConfig(
                policies=("prfaas", "prfaas-static"),
                trace=DATA / "mini_trace.jsonl",
                speedup=2.0,
                options=PLAIN,
            )
        ),
        "paper-10x": _scaled(10, ("prfaas", "homogeneous"), 25.0, 3000),
    }
