"""The PrfaaS analytical planner (paper §3.4): Eqs (2)-(8), grid search, TTFT, cost, sweeps."""

from __future__ import annotations

from prfaas.planner.model import StageThroughputs, ThresholdStats, evaluate
from prfaas.planner.plan import optimise
from prfaas.planner.result import CostComparison, DeploymentResult, PlanResult
from prfaas.planner.scenario import Scenario, list_builtin_scenarios, load_scenario

__all__ = [
    "CostComparison",
    "DeploymentResult",
    "PlanResult",
    "Scenario",
    "StageThroughputs",
    "ThresholdStats",
    "evaluate",
    "list_builtin_scenarios",
    "load_scenario",
    "optimise",
]
