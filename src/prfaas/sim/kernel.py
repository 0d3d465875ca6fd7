"""Deterministic discrete-event kernel: a heap of (time, seq, callback, arg) and a virtual clock."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Callback = Callable[[Any], None]


class Kernel:
    """Pops events in (time, insertion order); `now` only moves forward. It is the sim's Clock."""

    __slots__ = ("_heap", "_seq", "events", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callback, Any]] = []
        self._seq = 0
        self.events = 0

    def now_s(self) -> float:
        return self.now

    def at(self, time_s: float, fn: Callback, arg: Any = None) -> None:
        """Run fn(arg) at time_s (never earlier than now)."""
        if time_s < self.now:
            time_s = self.now
        self._seq += 1
        heapq.heappush(self._heap, (time_s, self._seq, fn, arg))

    def run(
        self,
        until_s: float = float("inf"),
        progress: Callable[[float], None] | None = None,
        progress_every: int = 20_000,
    ) -> None:
        """Process events up to until_s; `progress(now)` is called every `progress_every` events."""
        heap = self._heap
        pop = heapq.heappop
        count = self.events
        next_report = count + progress_every
        while heap:
            if heap[0][0] > until_s:
                break
            t, _, fn, arg = pop(heap)
            self.now = t
            fn(arg)
            count += 1
            if progress is not None and count >= next_report:
                self.events = count
                progress(t)
                next_report = count + progress_every
        self.events = count

    @property
    def pending(self) -> int:
        return len(self._heap)
