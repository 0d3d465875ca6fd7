"""A deployment file -> the planner's Scenario and the control core's startup plan (shared by the
router and the simulator's mirror of it, so both start from the same t, table and service times)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from prfaas.control import ControlConfig, ControlState, NodeLoad, initial_plan
from prfaas.control.params import describe_sources, with_overrides
from prfaas.deploy.config import DeploymentConfig
from prfaas.policy.params import PolicyParams

if TYPE_CHECKING:
    from prfaas.control.loop import ControlDecision
    from prfaas.planner.scenario import Scenario

PLANNED_KEYS = ("threshold_tokens", "threshold_by_gbps", "remote_service_s", "local_service_s")
PLANNED_POLICIES = ("prfaas", "prfaas-static")


def scenario_from_deployment(cfg: DeploymentConfig) -> Scenario | None:
    """The planner's view of this deployment: its hardware profiles (emulated engine only: the
    transformers engine runs real compute with no profile) and the [control] workload prior."""
    if cfg.engine.kind != "emulated":
        return None
    from prfaas.deploy.hardware import node_decode_profile, node_prefill_profile
    from prfaas.planner import load_scenario
    from prfaas.planner.scenario import Scenario
    from prfaas.profiles import get_hardware, get_kv_profile

    remote = [n for c in cfg.clusters if c.role == "prfaas" for n in c.nodes]
    pd = [n for c in cfg.clusters if c.role == "pd" for n in c.nodes]
    if not pd:
        return None
    pd_prefill, decode = node_prefill_profile(pd[0]), node_decode_profile(pd[0])
    remote_prefill = node_prefill_profile(remote[0]) if remote else pd_prefill
    if pd_prefill is None or decode is None or remote_prefill is None:
        return None
    if pd[0].max_batch:
        decode = replace(decode, bs_max=pd[0].max_batch)
    prior = load_scenario(cfg.control.workload)
    return Scenario(
        name=cfg.name,
        prfaas_instances=len(remote),
        pd_instances=len(pd),
        homogeneous_instances=len(pd),
        prfaas_prefill=remote_prefill,
        pd_prefill=pd_prefill,
        decode=decode,
        kv_size=get_kv_profile(cfg.engine.kv_profile or cfg.engine.model),
        link_gbps=cfg.links[0].gbps if cfg.links else 0.0,
        lengths=prior.lengths,
        output_tokens=prior.output_tokens,
        prfaas_hardware=get_hardware(remote[0].hardware if remote else pd[0].hardware),
        pd_hardware=get_hardware(pd[0].hardware),
        threshold_step_tokens=prior.threshold_step_tokens,
    )


def control_config(cfg: DeploymentConfig, scn: Scenario) -> ControlConfig:
    c = cfg.control
    return ControlConfig(
        scn,
        c.hysteresis,
        c.max_moves,
        cfg.router.rebalance_min_samples,
        c.window_periods,
        c.min_profile_samples,
    )


def initial_state(cfg: DeploymentConfig, params: PolicyParams) -> ControlState:
    """The file's split, every node idle."""
    pd = tuple(
        NodeLoad(n.name, n.role, 0.0) for c in cfg.clusters if c.role == "pd" for n in c.nodes
    )
    n_remote = sum(len(c.nodes) for c in cfg.clusters if c.role == "prfaas")
    return ControlState(n_remote, tuple(sorted(pd, key=lambda n: n.name)), params.threshold_tokens)


@dataclass(frozen=True, slots=True)
class StartupPlan:
    params: PolicyParams
    line: str  # what `prfaas up` prints: where each value came from
    decision: ControlDecision | None


def rescaled(params: PolicyParams, planned_t: int) -> tuple[tuple[float, int], ...]:
    """The planner's bandwidth table scaled so its full-rate entry is the t the file pinned: a
    slower link still raises t by the planner's factor, never above the file's t by its own."""
    factor = params.threshold_tokens / planned_t if planned_t > 0 else 1.0
    return tuple((gbps, round(t * factor)) for gbps, t in params.threshold_by_gbps)


def startup_plan(cfg: DeploymentConfig) -> StartupPlan:
    """The policy parameters a deployment starts with: the planner's (for the threshold policies
    on an emulated engine with [control] plan = true), with [policy.params] written in the file
    overriding them."""
    explicit = dict(cfg.policy.params)
    base = PolicyParams(**explicit)
    scn = scenario_from_deployment(cfg)
    if not cfg.control.plan or cfg.policy.name not in PLANNED_POLICIES or scn is None:
        if not cfg.control.plan:
            why = "planner off ([control] plan = false)"
        elif cfg.policy.name not in PLANNED_POLICIES:
            why = f"policy {cfg.policy.name} uses no t"
        else:
            why = f"the {cfg.engine.kind} engine has no profile to plan with"
        line = f"control: {why}; t={base.threshold_tokens} (file/default)"
        return StartupPlan(base, line, None)
    if scn.prfaas_instances == 0:
        return StartupPlan(base, "control: no PrfaaS cluster to plan for", None)
    decision = initial_plan(control_config(cfg, scn), initial_state(cfg, base), base)
    params = with_overrides(decision.params, explicit)
    if "threshold_tokens" in explicit and "threshold_by_gbps" not in explicit:
        params = replace(params, threshold_by_gbps=rescaled(params, decision.threshold_tokens))
    line = (
        f"control: {decision.reason}; t={params.threshold_tokens}, "
        f"table={[(round(g, 3), t) for g, t in params.threshold_by_gbps]}, "
        f"T_remote={params.remote_service_s:.3g}s T_local={params.local_service_s:.3g}s "
        f"({describe_sources(explicit, PLANNED_KEYS)}; workload prior {cfg.control.workload!r})"
    )
    return StartupPlan(params, line, decision)
