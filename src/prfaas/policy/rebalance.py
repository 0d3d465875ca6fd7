"""Long timescale (paper §3.4.3): convert PD nodes between prefill and decode and re-optimise t
from observed statistics with the planner's model, with hysteresis so roles do not flap."""

from __future__ import annotations

from dataclasses import dataclass, replace

from prfaas.planner.model import evaluate
from prfaas.planner.scenario import Scenario
from prfaas.policy.thresholds import best_threshold
from prfaas.workload.lengths import EmpiricalLengths


@dataclass(frozen=True, slots=True)
class ObservedStats:
    """What the cluster saw over the last window."""

    window_s: float
    incremental_tokens: tuple[int, ...]  # uncached prefill lengths after prefix matching
    mean_output_tokens: float
    link_gbps: float  # mean link capacity over the window
    prfaas_queue: float = 0.0  # mean waiting requests per PrfaaS prefill node
    pd_prefill_queue: float = 0.0  # ... per PD-P node
    decode_queue: float = 0.0  # ... per PD-D node (KV arrived, not yet admitted)


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """The current PrfaaS-PD configuration."""

    n_prfaas: int
    n_p: int
    n_d: int
    threshold_tokens: int


@dataclass(frozen=True, slots=True)
class RebalanceParams:
    """scenario: hardware and profile facts (its workload part is replaced by observations).
    hysteresis: relative Λ_max gain a change must bring. max_moves: nodes converted per period.
    min_samples: observed requests needed before acting."""

    scenario: Scenario
    hysteresis: float = 0.10
    max_moves: int = 1
    min_samples: int = 1000


@dataclass(frozen=True, slots=True)
class RoleChanges:
    prefill_to_decode: int = 0
    decode_to_prefill: int = 0


@dataclass(frozen=True, slots=True)
class RebalanceDecision:
    changes: RoleChanges
    n_p: int
    n_d: int
    threshold_tokens: int
    lambda_before: float | None
    lambda_after: float | None
    reason: str

    @property
    def changed(self) -> bool:
        return bool(self.changes.prefill_to_decode or self.changes.decode_to_prefill)


def _keep(state: DeploymentState, reason: str, lam: float | None = None) -> RebalanceDecision:
    return RebalanceDecision(
        RoleChanges(), state.n_p, state.n_d, state.threshold_tokens, lam, lam, reason
    )


def rebalance(
    stats: ObservedStats, deployment: DeploymentState, params: RebalanceParams
) -> RebalanceDecision:
    """Re-plan N_p / N_d (within max_moves) and t on the observed length distribution."""
    n = len(stats.incremental_tokens)
    if n < params.min_samples:
        return _keep(deployment, f"keep: {n} < {params.min_samples} samples")
    scn = params.scenario.with_lengths(EmpiricalLengths(stats.incremental_tokens, "observed"))
    scn = scn.with_link(max(stats.link_gbps, 1e-6))
    scn = replace(
        scn, output_tokens=max(stats.mean_output_tokens, 1.0), prfaas_instances=deployment.n_prfaas
    )
    total = deployment.n_p + deployment.n_d
    now = evaluate(scn, deployment.threshold_tokens, deployment.n_p, deployment.n_d).lambda_max
    best = (now, deployment.n_p, deployment.threshold_tokens)
    lo = max(1 if deployment.n_p > 0 else 0, deployment.n_p - params.max_moves)
    hi = min(total - 1, deployment.n_p + params.max_moves)
    for n_p in range(lo, hi + 1):
        t, lam = best_threshold(scn, n_p, total - n_p)
        if lam > best[0] * (1 + 1e-12):
            best = (lam, n_p, t)
    lam, n_p, t = best
    if lam <= now * (1 + params.hysteresis):
        return _keep(deployment, f"keep: best gain {lam / now - 1:+.1%} within hysteresis", now)
    moved = n_p - deployment.n_p
    changes = RoleChanges(prefill_to_decode=max(-moved, 0), decode_to_prefill=max(moved, 0))
    side = "prefill-bound" if moved > 0 else ("decode-bound" if moved < 0 else "t re-optimised")
    return RebalanceDecision(
        changes,
        n_p,
        total - n_p,
        t,
        now,
        lam,
        f"{side}: N_p {deployment.n_p}->{n_p}, t {deployment.threshold_tokens}->{t}, "
        f"Λ_max {now:.2f}->{lam:.2f} req/s",
    )
