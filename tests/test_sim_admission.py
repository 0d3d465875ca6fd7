"""The simulator sheds as the live router does: policy.admission.admit on the placed request,
with the deployment's [limits] in modelled seconds and the same waiting count."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prfaas.bench.run import BenchSettings
from prfaas.bench.simlive import sim_requests, simulate
from prfaas.core.lifecycle import Phase
from prfaas.deploy.config import load_deployment
from prfaas.policy.admission import AdmissionLimits
from prfaas.sim.admission import SHED_PREFIX
from prfaas.sim.engine import Simulation
from prfaas.sim.from_deployment import setup_from_deployment

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "paper-emulated.toml"


def _run(limits: AdmissionLimits | None, policy: str = "prfaas-static") -> Simulation:
    cfg = load_deployment(EXAMPLE)
    setup = replace(setup_from_deployment(cfg, policy), admission=limits)
    plan = BenchSettings(20.0, workload="paper", rate_rps=12.0).plan()
    sim = Simulation(setup, sim_requests(cfg, plan))
    sim.run()
    return sim


def test_the_deployment_mirror_carries_the_routers_limits() -> None:
    cfg = load_deployment(EXAMPLE)
    setup = setup_from_deployment(cfg, "prfaas")
    assert setup.admission == cfg.limits.admission_limits(cfg.engine.time_scale)
    assert setup_from_deployment(cfg, "prfaas", mirror_live=False).admission is None


def test_overload_is_shed_with_the_routers_reasons_and_the_rest_finishes() -> None:
    sim = _run(AdmissionLimits(max_queue=4))
    shed = [r for r in sim.records if r.reason.startswith(SHED_PREFIX)]
    assert shed, "twice the sustainable rate with at most 4 waiting must shed"
    assert {r.reason for r in shed} == {SHED_PREFIX + "queue"}
    assert all(r.phase == Phase.REJECTED for r in shed)
    others = [r for r in sim.records if not r.reason.startswith(SHED_PREFIX)]
    assert others and all(r.phase == Phase.FINISHED for r in others)
    assert sim.admission is not None and sim.admission.waiting == 0  # every first token counted


def test_no_limits_sheds_nothing() -> None:
    sim = _run(None)
    assert not any(r.reason.startswith(SHED_PREFIX) for r in sim.records)
    assert all(r.phase == Phase.FINISHED for r in sim.records)


def test_sim_vs_live_leaves_shed_requests_out_as_the_live_log_does() -> None:
    cfg = load_deployment(EXAMPLE)
    plan = BenchSettings(20.0, workload="paper", rate_rps=12.0).plan()
    decided, _ = simulate(cfg, "prfaas-static", plan)
    assert 0 < len(decided) < len(plan)  # the default 4 s queue-wait bound sheds some
