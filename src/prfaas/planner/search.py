"""Exhaustive grid search (paper §3.4.2) for PrfaaS-PD, homogeneous PD and naive heterogeneous."""

from __future__ import annotations

import math

import numpy as np

from prfaas.errors import InfeasibleError, UsageError
from prfaas.planner.model import FloatArray, StageGrid, StageThroughputs, ThresholdStats, pick
from prfaas.planner.model import stage_grid as _stage_grid
from prfaas.planner.scenario import MAX_THRESHOLDS, Scenario, threshold_count

# Λ values within this relative distance of the maximum count as ties (float noise, flat optima).
TIE_RTOL = 1e-9


def threshold_grid(scn: Scenario) -> FloatArray:
    """t = 0, step, 2 step, ... up to the first multiple of step >= the longest possible input."""
    step = scn.threshold_step_tokens
    if not threshold_count(scn.lengths.max_tokens, step) <= MAX_THRESHOLDS:
        raise UsageError(
            f"a threshold grid up to {scn.lengths.max_tokens:.4g} tokens in steps of {step} has "
            f"more than {MAX_THRESHOLDS:,} points; raise the step (threshold_step_tokens)"
        )
    top = math.ceil(scn.lengths.max_tokens / step) * step
    return np.arange(0, top + step, step, dtype=np.float64)


def prfaas_grid(scn: Scenario, stats: ThresholdStats | None = None) -> StageGrid:
    """PrfaaS-PD on the full grid: N_p = 0..N-1 (N_d = N - N_p >= 1) x every threshold."""
    if stats is None:
        stats = ThresholdStats.of(scn.lengths, threshold_grid(scn))
    n_p = np.arange(scn.pd_instances, dtype=np.float64)
    return _stage_grid(scn, stats, scn.prfaas_instances, n_p, scn.pd_instances - n_p)


def best_cell(grid: StageGrid) -> tuple[int, int]:
    """argmax Λ_max; ties go to the largest prefill headroom min(Θ_prfaas/p, Θ_pd-p/(1-p)),
    then the smallest threshold, then the fewest prefill instances.

    Cells still tied after the headroom step have the same p, l_long and l_short (thresholds
    between two adjacent lengths of a trace, or below the shortest input), hence the same egress.
    The smallest such t sits just above the longest request kept local; it is the *most*
    offloading choice for lengths the distribution has not seen, not the least egress.
    """
    lam = grid.lambda_max
    best = float(np.max(lam))
    if not best > 0:
        raise InfeasibleError("no configuration serves any traffic (Λ_max = 0 everywhere)")
    tied = lam >= best * (1.0 - TIE_RTOL)
    headroom = np.where(tied, np.minimum(grid.prfaas_bound, grid.pd_p_bound), -np.inf)
    top = float(np.max(headroom))
    if math.isinf(top) and top > 0:
        candidates = np.argwhere(tied)
    else:
        candidates = np.argwhere(tied & (headroom >= top - abs(top) * TIE_RTOL))
    # np.argwhere is row-major: sort by (threshold column, then row).
    order = np.lexsort((candidates[:, 0], candidates[:, 1]))
    row, col = candidates[order[0]]
    return int(row), int(col)


def optimise_prfaas(scn: Scenario, stats: ThresholdStats | None = None) -> StageThroughputs:
    grid = prfaas_grid(scn, stats)
    row, col = best_cell(grid)
    return pick(grid, scn.prfaas_instances, row, col)


def optimise_homogeneous(scn: Scenario) -> StageThroughputs:
    """All-local PD on the PD hardware: no threshold (p = 0), best N_p in 1..N-1."""
    n = scn.homogeneous_instances
    if n < 2:
        raise InfeasibleError(f"homogeneous PD needs >= 2 instances, got {n}")
    stats = ThresholdStats.of(scn.lengths, np.array([math.inf]))
    n_p = np.arange(1, n, dtype=np.float64)
    grid = _stage_grid(scn, stats, 0, n_p, n - n_p)
    row, col = best_cell(grid)
    return pick(grid, 0, row, col)


def optimise_naive(scn: Scenario) -> StageThroughputs:
    """All prefill on the PrfaaS cluster (p = 1), every PD instance decodes; nothing to search."""
    stats = ThresholdStats.of(scn.lengths, np.array([-1.0]))
    n_d = float(scn.pd_instances)
    grid = _stage_grid(scn, stats, scn.prfaas_instances, np.array([0.0]), np.array([n_d]))
    if not float(grid.lambda_max[0, 0]) > 0:
        raise InfeasibleError("naive heterogeneous PD serves no traffic")
    return pick(grid, scn.prfaas_instances, 0, 0)


def split_sweep(scn: Scenario, threshold_tokens: float) -> StageGrid:
    """Fig 5(a): fixed t, every N_p = 0..N-1."""
    stats = ThresholdStats.of(scn.lengths, np.array([float(threshold_tokens)]))
    n_p = np.arange(scn.pd_instances, dtype=np.float64)
    return _stage_grid(scn, stats, scn.prfaas_instances, n_p, scn.pd_instances - n_p)


def threshold_sweep(scn: Scenario, n_p: int, n_d: int) -> StageGrid:
    """Fig 5(b): fixed N_p / N_d, every threshold of the grid."""
    stats = ThresholdStats.of(scn.lengths, threshold_grid(scn))
    return _stage_grid(
        scn, stats, scn.prfaas_instances, np.array([float(n_p)]), np.array([float(n_d)])
    )


def bandwidth_sweep(
    scn: Scenario, gbps_values: tuple[float, ...] | None = None
) -> list[StageThroughputs]:
    """Re-optimise PrfaaS-PD at each link rate (the distribution statistics are shared)."""
    values = scn.bandwidth_sweep_gbps if gbps_values is None else gbps_values
    stats = ThresholdStats.of(scn.lengths, threshold_grid(scn))
    return [optimise_prfaas(scn.with_link(g), stats) for g in values]
