"""Paper Eqs (3)-(6): stage throughputs and Λ_max, vectorised over thresholds and P/D splits."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from prfaas.errors import UsageError
from prfaas.planner.scenario import Scenario
from prfaas.workload.lengths import LengthDistribution

FloatArray = npt.NDArray[np.float64]
INF = math.inf
# Stages whose Λ bound is within 0.5% of the smallest are all reported as binding.
BINDING_RTOL = 0.005


def _f(x: object) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class ThresholdStats:
    """p = P(L > t), l_long = E[L | L > t], l_short = E[L | L <= t] for each threshold t."""

    t: FloatArray
    p: FloatArray
    l_long: FloatArray
    l_short: FloatArray

    @classmethod
    def of(cls, lengths: LengthDistribution, thresholds: FloatArray) -> ThresholdStats:
        t = _f(thresholds)
        return cls(
            t=t,
            p=_f(lengths.prob_greater(t)),
            l_long=_f(lengths.mean_greater(t)),
            l_short=_f(lengths.mean_at_most(t)),
        )


@dataclass(frozen=True, slots=True)
class StageGrid:
    """Eqs (3)-(6) on a grid: rows are P/D splits, columns thresholds (broadcast shapes)."""

    stats: ThresholdStats
    n_p: FloatArray
    n_d: FloatArray
    theta_prfaas_compute: FloatArray
    theta_prfaas_link: FloatArray
    theta_prfaas: FloatArray
    theta_pd_p: FloatArray
    theta_pd_d: FloatArray
    prfaas_bound: FloatArray
    pd_p_bound: FloatArray
    lambda_max: FloatArray
    egress_gbps: FloatArray


def _bound(theta: FloatArray, share: FloatArray) -> FloatArray:
    """Θ / share, +inf where a stage receives no traffic (share = 0) so it never binds."""
    safe = np.where(share > 0, share, 1.0)
    return np.where(share > 0, np.nan_to_num(theta, nan=0.0) / safe, INF)


def stage_grid(
    scn: Scenario, stats: ThresholdStats, n_prfaas: int, n_p: FloatArray, n_d: FloatArray
) -> StageGrid:
    """Stage throughputs for thresholds `stats.t` (last axis) and splits n_p/n_d (first axis)."""
    p, l_long, l_short = stats.p[None, :], stats.l_long[None, :], stats.l_short[None, :]
    n_p2, n_d2 = _f(n_p)[:, None], _f(n_d)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        long_ok = np.nan_to_num(l_long, nan=0.0)
        short_ok = np.nan_to_num(l_short, nan=0.0)
        compute = np.where(p > 0, n_prfaas / _f(scn.prfaas_prefill.time_s(long_ok)), np.nan)
        s_long_bytes = _f(scn.kv_size.bytes(long_ok))
        link = np.where(p > 0, scn.link_bytes_per_s / s_long_bytes, np.nan)
        theta_prfaas = np.fmin(compute, link)
        theta_pd_p = np.where(p < 1, n_p2 / _f(scn.pd_prefill.time_s(short_ok)), np.nan)
    theta_pd_d = n_d2 * scn.decode.requests_per_s(scn.output_tokens)
    prfaas_bound = _bound(theta_prfaas, p)
    pd_p_bound = _bound(theta_pd_p, 1.0 - p)
    lam = np.minimum(np.minimum(prfaas_bound, pd_p_bound), theta_pd_d)
    egress = np.where(p > 0, p * lam * s_long_bytes * 8.0 / 1e9, 0.0)
    return StageGrid(
        stats=stats,
        n_p=n_p2,
        n_d=n_d2,
        theta_prfaas_compute=compute,
        theta_prfaas_link=link,
        theta_prfaas=theta_prfaas,
        theta_pd_p=theta_pd_p,
        theta_pd_d=theta_pd_d,
        prfaas_bound=prfaas_bound,
        pd_p_bound=pd_p_bound,
        lambda_max=lam,
        egress_gbps=egress,
    )


@dataclass(frozen=True, slots=True)
class StageThroughputs:
    """One configuration's stage throughputs (req/s), Λ_max and what binds it."""

    threshold_tokens: float
    n_prfaas: int
    n_p: int
    n_d: int
    offload_fraction: float
    l_long: float | None
    l_short: float | None
    theta_prfaas_compute: float | None
    theta_prfaas_link: float | None
    theta_prfaas: float | None
    theta_pd_p: float | None
    theta_pd_d: float
    prfaas_bound: float
    pd_p_bound: float
    lambda_max: float
    egress_gbps: float
    bottleneck: str

    @property
    def eq7_residual(self) -> float | None:
        """(Θ_prfaas/p − Θ_pd-p/(1−p)) / max(both): 0 when both prefill stages saturate together."""
        a, b = self.prfaas_bound, self.pd_p_bound
        if not (math.isfinite(a) and math.isfinite(b)):
            return None
        return (a - b) / max(a, b)

    @property
    def eq8_residual(self) -> float:
        """(Θ_prfaas + Θ_pd-p − Θ_pd-d) / Θ_pd-d: 0 when producers balance the consumer."""
        produced = (self.theta_prfaas or 0.0) + (self.theta_pd_p or 0.0)
        return (produced - self.theta_pd_d) / self.theta_pd_d


def _opt(x: float) -> float | None:
    return x if math.isfinite(x) else None


def pick(grid: StageGrid, n_prfaas: int, row: int, col: int) -> StageThroughputs:
    """Freeze one grid cell into a StageThroughputs."""
    s = grid.stats

    def at(a: FloatArray) -> float:
        return float(np.broadcast_to(a, grid.lambda_max.shape)[row, col])

    bounds = {
        "prfaas-compute": at(grid.theta_prfaas_compute) / max(float(s.p[col]), 1e-300),
        "prfaas-link": at(grid.theta_prfaas_link) / max(float(s.p[col]), 1e-300),
        "pd-prefill": at(grid.pd_p_bound),
        "decode": at(grid.theta_pd_d),
    }
    finite = {k: v for k, v in bounds.items() if math.isfinite(v)}
    return StageThroughputs(
        threshold_tokens=float(s.t[col]),
        n_prfaas=n_prfaas,
        n_p=int(at(grid.n_p)),
        n_d=int(at(grid.n_d)),
        offload_fraction=float(s.p[col]),
        l_long=_opt(float(s.l_long[col])),
        l_short=_opt(float(s.l_short[col])),
        theta_prfaas_compute=_opt(at(grid.theta_prfaas_compute)),
        theta_prfaas_link=_opt(at(grid.theta_prfaas_link)),
        theta_prfaas=_opt(at(grid.theta_prfaas)),
        theta_pd_p=_opt(at(grid.theta_pd_p)),
        theta_pd_d=at(grid.theta_pd_d),
        prfaas_bound=at(grid.prfaas_bound),
        pd_p_bound=at(grid.pd_p_bound),
        lambda_max=at(grid.lambda_max),
        egress_gbps=at(grid.egress_gbps),
        bottleneck=_binding(finite),
    )


def _binding(bounds: dict[str, float]) -> str:
    """Every stage whose bound is within BINDING_RTOL of the smallest, joined with '+'."""
    if not bounds:
        return "none"
    low = min(bounds.values())
    return "+".join(k for k, v in bounds.items() if v <= low * (1 + BINDING_RTOL))


def evaluate(
    scenario: Scenario,
    threshold_tokens: float,
    n_p: int,
    n_d: int,
    *,
    lengths: LengthDistribution | None = None,
    n_prfaas: int | None = None,
) -> StageThroughputs:
    """Eqs (3)-(6) for one configuration; `lengths` overrides the scenario's distribution (e.g. an
    observed one for a runtime rebalancer), `n_prfaas` its PrfaaS instance count."""
    if n_p < 0 or n_d < 0 or (n_prfaas is not None and n_prfaas < 0):
        raise UsageError("instance counts must be >= 0")
    if not math.isfinite(threshold_tokens):
        raise UsageError(f"threshold must be a finite number of tokens, got {threshold_tokens!r}")
    dist = lengths if lengths is not None else scenario.lengths
    n_pf = scenario.prfaas_instances if n_prfaas is None else int(n_prfaas)
    stats = ThresholdStats.of(dist, np.array([float(threshold_tokens)]))
    grid = stage_grid(scenario, stats, n_pf, np.array([float(n_p)]), np.array([float(n_d)]))
    return pick(grid, n_pf, 0, 0)
