"""The clock is injected: simulators advance a virtual one, live code passes a wall clock."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Anything that can say what time it is, in seconds."""

    def now_s(self) -> float: ...


class ManualClock:
    """A clock that only moves when told to (simulation, tests)."""

    __slots__ = ("_now_s",)

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def set(self, now_s: float) -> None:
        if now_s < self._now_s:
            raise ValueError(f"clock cannot go backwards: {now_s} < {self._now_s}")
        self._now_s = now_s
