"""The deployment as the control loop sees it, and the loop's knobs (frozen)."""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.planner.scenario import Scenario


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One PD node: its role and the work it holds (queued prefill tokens, or running +
    waiting decode requests), the key for choosing which node converts."""

    name: str
    role: str  # prefill | decode
    load: float
    draining: bool = False


@dataclass(frozen=True, slots=True)
class ControlState:
    """PrfaaS instance count, the PD cluster's nodes, the current t, and whether a role change
    is still in progress (one conversion at a time)."""

    n_prfaas: int
    pd_nodes: tuple[NodeLoad, ...]
    threshold_tokens: int
    converting: bool = False

    @property
    def n_p(self) -> int:
        return sum(1 for n in self.pd_nodes if n.role == "prefill")

    @property
    def n_d(self) -> int:
        return len(self.pd_nodes) - self.n_p


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """scenario: the configured hardware facts and workload prior (the planner's input).
    hysteresis: relative Λ_max gain a change must bring. max_moves: nodes converted per period.
    min_samples: served requests in the window before re-planning. window_periods: periods the
    statistics cover. min_profile_samples: prefills (per cluster role) or decode steps observed
    before a fitted profile replaces the configured one."""

    scenario: Scenario
    hysteresis: float = 0.10
    max_moves: int = 1
    min_samples: int = 1000
    window_periods: int = 4
    min_profile_samples: int = 30
