"""Unloaded TTFT over the length distribution: prefill on the assigned hardware + S_kv / link rate.

This is the best-fit reading of the paper's Table 6 TTFT columns (docs/paper-notes.md): no queueing,
the cross-cluster transfer added only for requests prefilled on the PrfaaS cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prfaas.planner.model import FloatArray
from prfaas.planner.scenario import Scenario

# Equal-probability bins for continuous distributions; empirical ones use their exact support.
QUADRATURE_POINTS = 200_000


@dataclass(frozen=True, slots=True)
class TtftStats:
    mean_s: float
    p90_s: float


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """Smallest v with P(X <= v) >= q for a discrete distribution."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1] * (1 - 1e-12), side="left"))
    return float(values[order][min(idx, len(order) - 1)])


class TtftModel:
    """Caches the discretised length distribution of one scenario."""

    def __init__(self, scn: Scenario) -> None:
        self.scn = scn
        values, weights = scn.lengths.discretise(QUADRATURE_POINTS)
        self.values = np.asarray(values, dtype=np.float64)
        self.weights = np.asarray(weights, dtype=np.float64)
        transfer = np.asarray(scn.kv_size.bytes(self.values), np.float64) / scn.link_bytes_per_s
        self.remote_s = np.asarray(scn.prfaas_prefill.time_s(self.values), np.float64) + transfer
        self.local_s = np.asarray(scn.pd_prefill.time_s(self.values), np.float64)

    def _stats(self, ttft: FloatArray) -> TtftStats:
        mean = float(np.dot(ttft, self.weights) / self.weights.sum())
        return TtftStats(mean_s=mean, p90_s=weighted_quantile(ttft, self.weights, 0.9))

    def prfaas(self, threshold_tokens: float) -> TtftStats:
        """L > t: PrfaaS prefill + transfer; L <= t: local PD-P prefill."""
        return self._stats(np.where(self.values > threshold_tokens, self.remote_s, self.local_s))

    def homogeneous(self) -> TtftStats:
        return self._stats(self.local_s)

    def naive(self) -> TtftStats:
        return self._stats(self.remote_s)
