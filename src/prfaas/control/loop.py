"""One control period: window -> profile and link estimates -> re-planned t, table and split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from prfaas.control.capacity import LinkEstimate, estimate_link
from prfaas.control.params import derive_params
from prfaas.control.profiling import ProfileEstimates, estimate_profiles
from prfaas.control.state import ControlConfig, ControlState, NodeLoad
from prfaas.control.window import ObservationWindow, PeriodObservation
from prfaas.planner.scenario import Scenario
from prfaas.policy.params import PolicyParams
from prfaas.policy.rebalance import (
    DeploymentState,
    ObservedStats,
    RebalanceParams,
    RoleChanges,
    rebalance,
)
from prfaas.policy.thresholds import best_threshold
from prfaas.workload.lengths import EmpiricalLengths


@dataclass(frozen=True, slots=True)
class ControlDecision:
    """A re-plan: the new split, t and its bandwidth table, service times, the estimates they
    rest on, and which PD nodes convert (node, new role), each draining first."""

    reason: str
    n_p: int
    n_d: int
    params: PolicyParams
    link: LinkEstimate
    profiles: ProfileEstimates
    conversions: tuple[tuple[str, str], ...]
    lambda_before: float | None
    lambda_after: float | None

    @property
    def threshold_tokens(self) -> int:
        return self.params.threshold_tokens

    def record(self, time_s: float) -> dict[str, Any]:
        """The JSON line both drivers log."""
        return {
            "t_s": time_s,
            "reason": self.reason,
            "n_p": self.n_p,
            "n_d": self.n_d,
            "threshold_tokens": self.threshold_tokens,
            "link_gbps": self.link.gbps,
            "conversions": [list(c) for c in self.conversions],
        }


def estimate_summary(link: LinkEstimate, profiles: ProfileEstimates) -> dict[str, Any]:
    """Flat numbers for /metrics and the dashboard: each estimate with its sample count."""
    out: dict[str, Any] = {
        "link_gbps": link.gbps,
        "link_samples": link.samples,
        "link_source": link.source,
        "decode_step_s": profiles.decode.t_decode_s,
        "decode_samples": profiles.decode_samples,
    }
    for role, fit in (("prfaas", profiles.prfaas), ("pd", profiles.pd)):
        out[f"{role}_prefill_samples"] = fit.samples
        out[f"{role}_prefill_fitted"] = fit.fitted
        out[f"{role}_prefill_scale"] = getattr(fit.profile, "scale", 1.0)
        out[f"{role}_prefill_offset_s"] = getattr(fit.profile, "offset_s", 0.0)
    return out


def observed_scenario(
    scn: Scenario, profiles: ProfileEstimates, incs: tuple[int, ...], mean_out: float
) -> Scenario:
    """The configured scenario with the fitted profiles and the observed workload."""
    out = replace(
        scn,
        prfaas_prefill=profiles.prfaas.profile,
        pd_prefill=profiles.pd.profile,
        decode=profiles.decode,
    )
    if incs:
        out = replace(out.with_lengths(EmpiricalLengths(incs, "observed")), output_tokens=mean_out)
    return out


def pick_conversions(state: ControlState, changes: RoleChanges) -> tuple[tuple[str, str], ...]:
    """The least-loaded PD nodes of the role that shrinks (ties by name), never the last one."""
    out: list[tuple[str, str]] = []
    for old, new, count in (
        ("prefill", "decode", changes.prefill_to_decode),
        ("decode", "prefill", changes.decode_to_prefill),
    ):
        pool = sorted(
            (n for n in state.pd_nodes if n.role == old and not n.draining),
            key=lambda n: (n.load, n.name),
        )
        for node in pool[: max(0, min(count, len(pool) - 1))]:
            out.append((node.name, new))
    return tuple(out)


def estimates(
    window: ObservationWindow, cfg: ControlConfig
) -> tuple[LinkEstimate, ProfileEstimates]:
    scn = cfg.scenario
    link = estimate_link(window.link, scn.link_gbps)
    profiles = estimate_profiles(
        window.prefill,
        window.decode_step_s,
        scn.prfaas_prefill,
        scn.pd_prefill,
        scn.decode,
        cfg.min_profile_samples,
    )
    return link, profiles


def control_step(
    window: ObservationWindow,
    obs: PeriodObservation,
    state: ControlState,
    cfg: ControlConfig,
    params: PolicyParams,
) -> tuple[ObservationWindow, ControlDecision | None]:
    """Add one period to the window; re-plan on it. A decision comes back only when the split or
    t changes; the window then restarts (the new configuration changes what is observed)."""
    window = window.push(obs, cfg.window_periods)
    incs, outs = window.incremental_tokens, window.output_tokens
    busy = state.converting or any(n.draining for n in state.pd_nodes)
    if busy or not outs:
        return window, None
    link, profiles = estimates(window, cfg)
    mean_out = sum(outs) / len(outs)
    scn = observed_scenario(cfg.scenario, profiles, (), 0.0)
    stats = ObservedStats(window.window_s, incs, mean_out, link.gbps)
    now = DeploymentState(state.n_prfaas, state.n_p, state.n_d, state.threshold_tokens)
    d = rebalance(stats, now, RebalanceParams(scn, cfg.hysteresis, cfg.max_moves, cfg.min_samples))
    if not d.changed and d.threshold_tokens == state.threshold_tokens:
        return window, None
    observed = observed_scenario(cfg.scenario, profiles, incs, mean_out)
    new = derive_params(observed, d.n_p, d.n_d, d.threshold_tokens, params, link_gbps=link.gbps)
    decision = ControlDecision(
        d.reason,
        d.n_p,
        d.n_d,
        new,
        link,
        profiles,
        pick_conversions(state, d.changes),
        d.lambda_before,
        d.lambda_after,
    )
    return ObservationWindow(), decision


def initial_plan(
    cfg: ControlConfig, state: ControlState, params: PolicyParams | None = None
) -> ControlDecision:
    """Startup: the planner's t for the current split on the configured workload prior, with
    its bandwidth table and service times, and the split the planner would pick instead."""
    scn = cfg.scenario
    t, lam = best_threshold(scn, state.n_p, state.n_d)
    total = state.n_p + state.n_d
    best_np, best_lam = state.n_p, lam
    for n_p in range(1 if total > 1 else 0, total):
        _, lam_alt = best_threshold(scn, n_p, total - n_p)
        if lam_alt > best_lam * (1 + 1e-9):
            best_np, best_lam = n_p, lam_alt
    link, profiles = estimates(ObservationWindow(), cfg)
    reason = f"planned: t {t} at N_p/N_d {state.n_p}/{state.n_d}, Λ_max {lam:.2f} req/s"
    if best_np != state.n_p:
        reason += f" (the planner's split {best_np}/{total - best_np} reaches {best_lam:.2f})"
    return ControlDecision(
        reason,
        state.n_p,
        state.n_d,
        derive_params(scn, state.n_p, state.n_d, t, params),
        link,
        profiles,
        (),
        lam,
        lam,
    )


def pd_nodes(entries: list[tuple[str, str, float, bool]]) -> tuple[NodeLoad, ...]:
    """NodeLoads from (name, role, load, draining) tuples, in name order."""
    return tuple(NodeLoad(*e) for e in sorted(entries))
