"""The [control] section: the control loop's workload prior and knobs (period: rebalance_s)."""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.planner.fields import Table


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """workload: a planner scenario (built-in name or TOML path) whose [workload] is the length
    and output prior the router plans with at start, before it has observed anything.
    plan: run the planner at start (emulated engine); explicit [policy.params] still win.
    hysteresis, max_moves, window_periods, min_profile_samples: see prfaas.control.ControlConfig."""

    workload: str = "paper"
    plan: bool = True
    hysteresis: float = 0.10
    max_moves: int = 1
    window_periods: int = 4
    min_profile_samples: int = 30


def control_section(root: Table) -> ControlSettings:
    t = root.table("control", optional=True)
    if t is None:
        return ControlSettings()
    plan = t.raw("plan") if t.has("plan") else True
    if not isinstance(plan, bool):
        raise t.fail("plan", f"must be true or false, got {plan!r}")
    out = ControlSettings(
        workload=t.string("workload", default="paper"),
        plan=plan,
        hysteresis=t.number("hysteresis", default=0.10),
        max_moves=t.integer("max_moves", default=1, minimum=1),
        window_periods=t.integer("window_periods", default=4, minimum=1),
        min_profile_samples=t.integer("min_profile_samples", default=30, minimum=2),
    )
    t.finish()
    return out
