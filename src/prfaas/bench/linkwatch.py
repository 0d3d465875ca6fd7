"""Link egress over a live run: the router's per-link byte counters and capacity, once a second."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LinkSample:
    """One poll: wall seconds since the watch began, the link's cumulative modelled bytes and
    its capacity then (modelled Gbit/s, as the router's policy sees it)."""

    t_s: float
    link: str
    bytes_total: int
    capacity_gbps: float


class LinkWatch:
    """Polls `/internal/state` on the router's control listener in a thread while a run goes on
    (`with LinkWatch(dep) as w: ...`; then `w.samples`)."""

    def __init__(self, dep: Any, period_s: float = 1.0) -> None:
        self.dep = dep
        self.period_s = period_s
        self.samples: list[LinkSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="link-watch", daemon=True)
        self._t0 = 0.0

    def __enter__(self) -> LinkWatch:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic() - self._t0
            try:
                links = self.dep.control("GET", "/internal/state", timeout=5).json()["links"]
            except Exception:  # a missed poll is a gap in the series, not a failure
                links = {}
            for name, s in links.items():
                self.samples.append(
                    LinkSample(t, name, int(s["bytes_total"]), float(s["capacity_gbps"]))
                )
            self._stop.wait(self.period_s)


def egress_series(
    samples: list[LinkSample], link: str, time_scale: float = 1.0
) -> list[tuple[float, float, float]]:
    """(t_s, egress Gbit/s over the interval ending at t_s, capacity at t_s) for one link, in
    modelled units: the counters are modelled bytes, and a wall second of an emulated engine
    running `time_scale` x faster is `time_scale` modelled seconds."""
    points = [s for s in samples if s.link == link]
    out = []
    for a, b in itertools.pairwise(points):
        dt = b.t_s - a.t_s
        if dt > 0:
            gbps = (b.bytes_total - a.bytes_total) * 8 / 1e9 / (dt * time_scale)
            out.append((b.t_s, gbps, b.capacity_gbps))
    return out


def longest_over(series: list[tuple[float, float, float]], tolerance: float) -> float:
    """The longest stretch (s) of consecutive intervals whose egress exceeds capacity x (1 +
    tolerance)."""
    best = run = 0.0
    last_t = series[0][0] if series else 0.0
    for t, egress, cap in series:
        dt = t - last_t
        last_t = t
        if cap > 0 and egress > cap * (1 + tolerance):
            run += dt
            best = max(best, run)
        else:
            run = 0.0
    return best
