"""optimise(scenario): the three deployments, unloaded TTFT, ratios and equal-cost comparison."""

from __future__ import annotations

import math

from prfaas.planner.model import StageThroughputs
from prfaas.planner.result import CostComparison, DeploymentResult, PlanResult
from prfaas.planner.scenario import Scenario
from prfaas.planner.search import (
    bandwidth_sweep,
    optimise_homogeneous,
    optimise_naive,
    optimise_prfaas,
)
from prfaas.planner.ttft import TtftModel, TtftStats


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def _prfaas_record(s: StageThroughputs, ttft: TtftStats) -> DeploymentResult:
    return DeploymentResult(
        threshold_tokens=round(s.threshold_tokens),
        n_prfaas=s.n_prfaas,
        n_p=s.n_p,
        n_d=s.n_d,
        theta_prfaas=s.theta_prfaas,
        theta_pd_p=s.theta_pd_p if s.n_p > 0 else None,
        theta_pd_d=s.theta_pd_d,
        lambda_max=s.lambda_max,
        offload_fraction=s.offload_fraction,
        l_long=s.l_long,
        l_short=s.l_short,
        egress_gbps=s.egress_gbps,
        ttft_mean_s=ttft.mean_s,
        ttft_p90_s=ttft.p90_s,
    )


def _homogeneous_record(s: StageThroughputs, ttft: TtftStats) -> DeploymentResult:
    return DeploymentResult(
        threshold_tokens=None,
        n_prfaas=None,
        n_p=s.n_p,
        n_d=s.n_d,
        theta_prfaas=None,
        theta_pd_p=s.theta_pd_p,
        theta_pd_d=s.theta_pd_d,
        lambda_max=s.lambda_max,
        offload_fraction=0.0,
        l_long=None,
        l_short=s.l_short,
        egress_gbps=0.0,
        ttft_mean_s=ttft.mean_s,
        ttft_p90_s=ttft.p90_s,
    )


def _naive_record(s: StageThroughputs, ttft: TtftStats) -> DeploymentResult:
    return DeploymentResult(
        threshold_tokens=None,
        n_prfaas=s.n_prfaas,
        n_p=None,
        n_d=s.n_d,
        theta_prfaas=s.theta_prfaas,
        theta_pd_p=None,
        theta_pd_d=s.theta_pd_d,
        lambda_max=s.lambda_max,
        offload_fraction=1.0,
        l_long=s.l_long,
        l_short=None,
        egress_gbps=s.egress_gbps,
        ttft_mean_s=ttft.mean_s,
        ttft_p90_s=ttft.p90_s,
    )


def cost_comparison(scn: Scenario, lam: dict[str, float]) -> CostComparison:
    """Hourly GPU cost from the scenario prices; throughput per dollar relative to homogeneous."""
    hetero = (
        scn.prfaas_instances * scn.prfaas_gpus_per_instance * scn.prfaas_price_per_gpu_hour
        + scn.pd_instances * scn.pd_gpus_per_instance * scn.pd_price_per_gpu_hour
    )
    homog = scn.homogeneous_instances * scn.pd_gpus_per_instance * scn.pd_price_per_gpu_hour
    cost = {"prfaas": hetero, "homogeneous": homog, "naive": hetero}
    per_dollar = {k: _ratio(lam[k], cost[k]) for k in cost}
    return CostComparison(
        cost_per_hour=cost,
        lambda_per_dollar_hour=per_dollar,
        prfaas_vs_homogeneous_equal_cost=_ratio(per_dollar["prfaas"], per_dollar["homogeneous"]),
        naive_vs_homogeneous_equal_cost=_ratio(per_dollar["naive"], per_dollar["homogeneous"]),
    )


def optimise(scenario: Scenario, *, with_bandwidth_sweep: bool = False) -> PlanResult:
    """Best configuration of each deployment (exhaustive grid), TTFT, ratios and costs."""
    stages = {
        "prfaas": optimise_prfaas(scenario),
        "homogeneous": optimise_homogeneous(scenario),
        "naive": optimise_naive(scenario),
    }
    ttft = TtftModel(scenario)
    deployments = {
        "prfaas": _prfaas_record(stages["prfaas"], ttft.prfaas(stages["prfaas"].threshold_tokens)),
        "homogeneous": _homogeneous_record(stages["homogeneous"], ttft.homogeneous()),
        "naive": _naive_record(stages["naive"], ttft.naive()),
    }
    lam = {k: v.lambda_max for k, v in stages.items()}
    ratios = {
        "prfaas_vs_homogeneous": _ratio(lam["prfaas"], lam["homogeneous"]),
        "prfaas_vs_naive": _ratio(lam["prfaas"], lam["naive"]),
        "naive_vs_homogeneous": _ratio(lam["naive"], lam["homogeneous"]),
    }
    sweep = tuple(bandwidth_sweep(scenario)) if with_bandwidth_sweep else ()
    return PlanResult(
        scenario=scenario.name,
        deployments=deployments,
        ratios=ratios,
        stages=stages,
        cost=cost_comparison(scenario, lam),
        bandwidth_sweep=sweep,
    )
