"""When to restart a crashed process: exponential backoff and a restart budget (pure, clock given).

A process that keeps crashing is restarted after 0.5 s, 1 s, 2 s, ... (capped), and at most
`budget` times within `window_s`; past that the supervisor gives up on it and says so, instead of
looping forever. A process that stayed up for `stable_s` starts again from the shortest backoff.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    first_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    budget: int = 5  # restarts allowed within window_s
    window_s: float = 60.0
    stable_s: float = 30.0  # up this long: the next crash is a fresh start

    def __post_init__(self) -> None:
        if not 0 < self.first_backoff_s <= self.max_backoff_s:
            raise ValueError("need 0 < first_backoff_s <= max_backoff_s")
        if self.budget < 1 or self.window_s <= 0 or self.stable_s <= 0:
            raise ValueError("budget >= 1, window_s > 0 and stable_s > 0 are required")


@dataclass(slots=True)
class RestartState:
    """One supervised process: when it started and when it was restarted recently."""

    started_s: float
    restarts: deque[float] = field(default_factory=deque)
    streak: int = 0  # crashes in a row without a stable run


@dataclass(frozen=True, slots=True)
class RestartDecision:
    restart: bool
    at_s: float = 0.0  # when to restart (clock of the caller)
    reason: str = ""


def on_exit(policy: RestartPolicy, state: RestartState, now_s: float) -> RestartDecision:
    """The process exited at `now_s`: restart it (when), or give up (why). Updates `state`."""
    if now_s - state.started_s >= policy.stable_s:
        state.streak = 0
    while state.restarts and now_s - state.restarts[0] > policy.window_s:
        state.restarts.popleft()
    if len(state.restarts) >= policy.budget:
        return RestartDecision(
            False, reason=f"{len(state.restarts)} restarts within {policy.window_s:g} s: giving up"
        )
    backoff = min(policy.first_backoff_s * 2**state.streak, policy.max_backoff_s)
    state.streak += 1
    at = now_s + backoff
    state.restarts.append(at)
    return RestartDecision(True, at, f"restart {len(state.restarts)} in {backoff:g} s")


def on_started(state: RestartState, now_s: float) -> None:
    state.started_s = now_s
