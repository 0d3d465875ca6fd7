"""Plan results: one record per deployment with exactly the JSON keys of `prfaas plan --json`."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from prfaas.planner.model import StageThroughputs

DEPLOYMENTS = ("prfaas", "homogeneous", "naive")


@dataclass(frozen=True, slots=True)
class DeploymentResult:
    """Field names are the JSON keys; None (null) where a key does not apply to the deployment."""

    threshold_tokens: int | None
    n_prfaas: int | None
    n_p: int | None
    n_d: int
    theta_prfaas: float | None
    theta_pd_p: float | None
    theta_pd_d: float
    lambda_max: float
    offload_fraction: float
    l_long: float | None
    l_short: float | None
    egress_gbps: float
    ttft_mean_s: float
    ttft_p90_s: float


@dataclass(frozen=True, slots=True)
class CostComparison:
    """Hourly cost of each deployment and throughput ratios at equal cost (per dollar)."""

    cost_per_hour: dict[str, float]
    lambda_per_dollar_hour: dict[str, float]
    prfaas_vs_homogeneous_equal_cost: float
    naive_vs_homogeneous_equal_cost: float


@dataclass(frozen=True, slots=True)
class PlanResult:
    scenario: str
    deployments: dict[str, DeploymentResult]
    ratios: dict[str, float]
    stages: dict[str, StageThroughputs]
    cost: CostComparison
    bandwidth_sweep: tuple[StageThroughputs, ...] = field(default=())

    @property
    def prfaas_is_naive(self) -> bool:
        """The PrfaaS-PD optimum offloads every request (t below every length) and keeps no PD
        prefill instance (N_p = 0): it *is* the naive heterogeneous deployment."""
        best = self.stages["prfaas"]
        return best.n_p == 0 and best.offload_fraction >= 1.0

    def to_json_dict(self) -> dict[str, Any]:
        """Exactly the documented shape: scenario, deployments{prfaas,homogeneous,naive}, ratios,
        prfaas_is_naive."""
        return {
            "scenario": self.scenario,
            "deployments": {k: _clean(asdict(self.deployments[k])) for k in DEPLOYMENTS},
            "ratios": _clean(dict(self.ratios)),
            "prfaas_is_naive": self.prfaas_is_naive,
        }


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf are not JSON: they become null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
