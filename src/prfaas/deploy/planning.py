"""A deployment file -> the planner's Scenario and the control core's startup plan (shared by the
router and the simulator's mirror of it, so both start from the same t, table and service times;
the transformers engine's Scenario comes from a warm-up pass's measured profiles)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from prfaas.control import ControlConfig, ControlState, NodeLoad, initial_plan
from prfaas.control.params import describe_sources, with_overrides
from prfaas.deploy.config import DeploymentConfig
from prfaas.errors import ConfigError, UsageError
from prfaas.policy.params import PolicyParams

if TYPE_CHECKING:
    from prfaas.control.loop import ControlDecision
    from prfaas.control.warmup import FlopShape, WarmupSamples
    from prfaas.planner.scenario import Scenario
    from prfaas.profiles import HardwareSpec

PLANNED_KEYS = ("threshold_tokens", "threshold_by_gbps", "remote_service_s", "local_service_s")
PLANNED_POLICIES = ("prfaas", "prfaas-static")


def workload_prior(cfg: DeploymentConfig, context_tokens: int = 0) -> tuple[Scenario, str]:
    """The [control] workload prior, times [control] workload_scale when set, else fitted to a
    real engine's context (`context_tokens` > 0); and how it was scaled, for the startup line."""
    from prfaas.control.warmup import fit_to_context, scale_prior
    from prfaas.planner import load_scenario

    prior = load_scenario(cfg.control.workload)
    note = f"workload prior {cfg.control.workload!r}"
    if cfg.control.workload_scale > 0:
        scale = cfg.control.workload_scale
        return scale_prior(prior, scale), f"{note} x{scale:.3g} ([control] workload_scale)"
    if context_tokens > 0:
        prior, factor = fit_to_context(prior, context_tokens)
        if factor < 1.0:
            note += f" x{factor:.3g} to the {context_tokens}-token context"
    return prior, note


def scenario_from_deployment(cfg: DeploymentConfig) -> Scenario | None:
    """The planner's view of this deployment: its hardware profiles (emulated engine only: the
    transformers engine runs real compute with no profile) and the [control] workload prior."""
    if cfg.engine.kind != "emulated":
        return None
    from prfaas.deploy.hardware import node_decode_profile, node_prefill_profile
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
    prior, _ = workload_prior(cfg)
    kv = get_kv_profile(cfg.engine.kv_profile or cfg.engine.model)
    return _scenario(cfg, (remote_prefill, pd_prefill, decode), kv, prior, get_hardware)


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
    scenario: Scenario | None = None  # what it was planned on (the rebalancer's starting point)


def rescaled(params: PolicyParams, planned_t: int) -> tuple[tuple[float, int], ...]:
    """The planner's bandwidth table scaled so its full-rate entry is the t the file pinned: a
    slower link still raises t by the planner's factor, never above the file's t by its own."""
    factor = params.threshold_tokens / planned_t if planned_t > 0 else 1.0
    return tuple((gbps, round(t * factor)) for gbps, t in params.threshold_by_gbps)


TRANSFORMERS_MAX_BATCH = 8  # the worker's default decode slots (worker/hf.py)


def flop_shape(cfg: DeploymentConfig) -> FlopShape:
    """The engine preset's FLOP terms (a local checkpoint with no preset: a linear shape)."""
    from prfaas.control.warmup import FlopShape
    from prfaas.model.presets import get_model

    try:
        terms = get_model(cfg.engine.model).spec.prefill_flop_terms()
    except (UsageError, ConfigError, KeyError):
        return FlopShape(0.0, 1.0, provenance="linear (no model preset)")
    return FlopShape(float(terms.quadratic), float(terms.linear))


def _hardware(name: str) -> HardwareSpec:
    """A preset, or a placeholder for "cpu" (the planner only prices hardware)."""
    from prfaas.profiles import HardwareSpec, get_hardware

    try:
        return get_hardware(name)
    except UsageError:
        return HardwareSpec(name, 0.0, 0.0, 0.0, 0.0, 0.0, price_note="no preset: unpriced")


def scenario_from_warmup(
    cfg: DeploymentConfig, samples: WarmupSamples
) -> tuple[Scenario | None, str]:
    """The planner's view of a real-engine deployment from a warm-up pass's measurements and the
    [control] workload prior fitted to the model's context; (None, why) when it cannot plan."""
    from prfaas.control.warmup import fit_warmup
    from prfaas.profiles import get_kv_profile

    remote = [n for c in cfg.clusters if c.role == "prfaas" for n in c.nodes]
    pd = [n for c in cfg.clusters if c.role == "pd" for n in c.nodes]
    decoders = [n for n in pd if n.role == "decode"] or pd
    if not pd:
        return None, "no PD cluster"
    bs_max = decoders[0].max_batch or TRANSFORMERS_MAX_BATCH
    fits = fit_warmup(samples, flop_shape(cfg), bs_max, bool(remote))
    if fits is None:
        return None, f"the warm-up measured too little to fit ({samples.count} samples)"
    try:
        kv = get_kv_profile(cfg.engine.kv_profile or cfg.engine.model)
    except (UsageError, ConfigError) as exc:
        return None, f"no KV size for {cfg.engine.model}: {exc}"
    prior, _ = workload_prior(cfg, samples.context_tokens)
    return _scenario(cfg, (fits.prfaas.profile, fits.pd.profile, fits.decode), kv, prior,
                     _hardware), ""


def _scenario(
    cfg: DeploymentConfig,
    profiles: tuple[Any, Any, Any],
    kv: Any,
    prior: Scenario,
    hardware: Callable[[str], HardwareSpec],
) -> Scenario:
    """The file's clusters and link with these (PrfaaS prefill, PD prefill, decode) profiles,
    KV size and workload prior: the one shape both the profile and the warm-up paths plan."""
    from prfaas.planner.scenario import Scenario

    remote = [n for c in cfg.clusters if c.role == "prfaas" for n in c.nodes]
    pd = [n for c in cfg.clusters if c.role == "pd" for n in c.nodes]
    remote_prefill, pd_prefill, decode = profiles
    return Scenario(
        name=cfg.name,
        prfaas_instances=len(remote),
        pd_instances=len(pd),
        homogeneous_instances=len(pd),
        prfaas_prefill=remote_prefill,
        pd_prefill=pd_prefill,
        decode=decode,
        kv_size=kv,
        link_gbps=cfg.links[0].gbps if cfg.links else 0.0,
        lengths=prior.lengths,
        output_tokens=prior.output_tokens,
        prfaas_hardware=hardware(remote[0].hardware if remote else pd[0].hardware),
        pd_hardware=hardware(pd[0].hardware),
        threshold_step_tokens=prior.threshold_step_tokens,
    )


def warmup_wanted(cfg: DeploymentConfig) -> bool:
    """A real engine the planner would plan for: the router measures it before serving."""
    return (
        cfg.engine.kind == "transformers"
        and cfg.control.plan
        and cfg.control.warmup_s > 0
        and cfg.policy.name in PLANNED_POLICIES
        and any(c.role == "prfaas" for c in cfg.clusters)
    )


def unplanned(cfg: DeploymentConfig, why: str) -> StartupPlan:
    base = PolicyParams(**dict(cfg.policy.params))
    return StartupPlan(base, f"control: {why}; t={base.threshold_tokens} (file/default)", None)


def _prior_note(cfg: DeploymentConfig, warmup: WarmupSamples | None) -> str:
    if warmup is None:
        return workload_prior(cfg)[1]
    note = workload_prior(cfg, warmup.context_tokens)[1]
    return f"planned from warm-up ({warmup.count} samples, {warmup.elapsed_s:.1f} s); {note}"


def startup_plan(cfg: DeploymentConfig, warmup: WarmupSamples | None = None) -> StartupPlan:
    """The policy parameters a deployment starts with: the planner's (for the threshold policies
    with [control] plan = true, on the emulated engine's profiles or on `warmup`, the profiles a
    real engine's warm-up pass measured), with [policy.params] written in the file overriding
    them."""
    explicit = dict(cfg.policy.params)
    base = PolicyParams(**explicit)
    if not cfg.control.plan:
        return unplanned(cfg, "planner off ([control] plan = false)")
    if cfg.policy.name not in PLANNED_POLICIES:
        return unplanned(cfg, f"policy {cfg.policy.name} uses no t")
    if warmup is not None and cfg.engine.kind != "emulated":
        scn, failed = scenario_from_warmup(cfg, warmup)
    else:
        scn, failed = scenario_from_deployment(cfg), ""
    if scn is None:
        pending = warmup_wanted(cfg) and warmup is None
        why = failed or (
            f"the {cfg.engine.kind} engine is planned after its warm-up pass"
            if pending
            else f"the {cfg.engine.kind} engine has no profile to plan with"
        )
        return unplanned(cfg, why)
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
        f"({describe_sources(explicit, PLANNED_KEYS)}; {_prior_note(cfg, warmup)})"
    )
    return StartupPlan(params, line, decision, scn)
