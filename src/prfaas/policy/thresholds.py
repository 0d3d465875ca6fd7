"""Planner-backed threshold search: the best t for a fixed split at each link capacity."""

from __future__ import annotations

import numpy as np

from prfaas.planner.scenario import Scenario
from prfaas.planner.search import threshold_sweep
from prfaas.workload.lengths import LengthDistribution

DEFAULT_TABLE_FRACTIONS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def best_threshold(scenario: Scenario, n_p: int, n_d: int) -> tuple[int, float]:
    """(t, Λ_max) maximising Eq (6) over the planner's threshold grid for a fixed N_p / N_d.

    Exact ties go to the smallest t (the first maximum of the grid): tied thresholds have equal
    statistics, and the smallest offloads the most of any length the distribution has not seen.
    """
    grid = threshold_sweep(scenario, n_p, n_d)
    lam = np.asarray(grid.lambda_max)[0]
    col = int(np.argmax(lam))
    return round(float(grid.stats.t[col])), float(lam[col])


def threshold_table(
    scenario: Scenario,
    n_p: int,
    n_d: int,
    *,
    lengths: LengthDistribution | None = None,
    fractions: tuple[float, ...] = DEFAULT_TABLE_FRACTIONS,
) -> tuple[tuple[float, int], ...]:
    """(capacity_gbps, best t) at fractions of the scenario's nominal link rate, ascending.

    This is the paper's short-timescale "threshold search" done ahead of time: when the link's
    capacity changes, the policy looks up the t the planner would pick for that capacity.
    """
    scn = scenario if lengths is None else scenario.with_lengths(lengths)
    out: list[tuple[float, int]] = []
    for f in sorted(fractions):
        gbps = scn.link_gbps * f
        t, _ = best_threshold(scn.with_link(gbps), n_p, n_d)
        out.append((gbps, t))
    return tuple(out)
