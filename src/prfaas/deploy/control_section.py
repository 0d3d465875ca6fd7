"""The [control] section: the control loop's workload prior and knobs (period: rebalance_s)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prfaas.planner.fields import Table


@dataclass(frozen=True, slots=True)
class ControlSettings:
    """workload: a planner scenario (built-in name or TOML path) whose [workload] is the length
    and output prior the router plans with at start, before it has observed anything.
    plan: run the planner at start (emulated engine: its profiles; transformers: a warm-up pass
    of at most warmup_s seconds measures them, 0 = no warm-up); explicit [policy.params] win.
    workload_scale: every prior length (input and output) times this; 0 = as written for the
    emulated engine, fitted to the model's context for a real one (control/warmup.py).
    hysteresis, max_moves, window_periods, min_profile_samples: see prfaas.control.ControlConfig."""

    workload: str = "paper"
    plan: bool = True
    warmup_s: float = 20.0
    workload_scale: float = 0.0
    hysteresis: float = 0.10
    max_moves: int = 1
    window_periods: int = 4
    min_profile_samples: int = 30
    # (start_s, end_s, factor): the inter-cluster links run at factor x their gbps in these
    # windows, in seconds since the router's first request (the simulator's --bandwidth-schedule).
    bandwidth_schedule: tuple[tuple[float, float, float], ...] = ()


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
        warmup_s=t.number("warmup_s", default=20.0),
        workload_scale=t.number("workload_scale", default=0.0),
        hysteresis=t.number("hysteresis", default=0.10),
        max_moves=t.integer("max_moves", default=1, minimum=1),
        window_periods=t.integer("window_periods", default=4, minimum=1),
        min_profile_samples=t.integer("min_profile_samples", default=30, minimum=2),
        bandwidth_schedule=_schedule(t) if t.has("bandwidth_schedule") else (),
    )
    t.finish()
    return out


def _schedule(t: Table) -> tuple[tuple[float, float, float], ...]:
    raw = t.raw("bandwidth_schedule")
    if not isinstance(raw, list):
        raise t.fail("bandwidth_schedule", "must be a list of [start_s, end_s, factor]")
    out: list[tuple[float, float, float]] = []
    for i, item in enumerate(raw):
        ok = isinstance(item, list) and len(item) == 3
        ok = ok and all(isinstance(v, int | float) and not isinstance(v, bool) for v in item)
        if not ok:
            raise t.fail(f"bandwidth_schedule[{i}]", "must be [start_s, end_s, factor] numbers")
        start, end, factor = (float(v) for v in item)
        if not (0 <= start < end < math.inf) or not (0 < factor < math.inf):
            raise t.fail(f"bandwidth_schedule[{i}]", "needs 0 <= start_s < end_s and factor > 0")
        if out and start < out[-1][1]:
            raise t.fail(f"bandwidth_schedule[{i}]", "windows must be in order, not overlapping")
        out.append((start, end, factor))
    return tuple(out)
