"""One direction of an inter-cluster link as a fluid model.

Concurrent transfers share the current capacity max-min fairly. A KV transfer is layer-wise
pipelined: it joins the link when the first layer is ready and its bytes become available at the
prefill's production rate, so an uncongested transfer ends when the prefill ends. A transfer that
has sent everything produced so far is capped at the production rate; one that fell behind (the
link was congested) may burst to catch up. Capacity follows a schedule (factor over time).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

from prfaas.sim.kernel import Kernel


def _tolerance(size: float) -> float:
    """Bytes of floating-point slack when comparing cumulative sent bytes with a target."""
    return 1e-7 * size + 64.0


class Flow:
    """A transfer of `size` bytes whose bytes are produced linearly over [p0, p1]."""

    __slots__ = ("arg", "capped", "on_done", "p0", "p1", "prod", "rate", "sent", "size", "t0")

    def __init__(
        self, size: float, p0: float, p1: float, on_done: Callable[[Any], None], arg: Any
    ) -> None:
        self.size = size
        self.sent = 0.0
        self.p0 = p0
        self.p1 = p1
        self.prod = size / (p1 - p0) if p1 > p0 else math.inf
        self.rate = 0.0
        self.capped = False
        self.on_done = on_done
        self.arg = arg
        self.t0 = 0.0  # tracking mode: `sent` is as of t0, plus rate x (now - t0)

    def available(self, now: float) -> float:
        if now >= self.p1:
            return self.size
        return self.size * (now - self.p0) / (self.p1 - self.p0)


class FluidLink:
    """Fair-shared, time-varying capacity; completions arrive one-way delay after the last byte."""

    __slots__ = (
        "_ends",
        "_gen",
        "_last",
        "_prod_sum",
        "_seq",
        "_timer_at",
        "_tracking",
        "base_bytes_per_s",
        "capacity_bytes_per_s",
        "dst",
        "ewma_bytes_per_s",
        "flows",
        "kernel",
        "name",
        "one_way_s",
        "rtt_ms",
        "sampled_bytes",
        "sent_bytes",
        "src",
        "transfers",
    )

    def __init__(self, kernel: Kernel, src: str, dst: str, gbps: float, rtt_ms: float) -> None:
        self.kernel = kernel
        self.src = src
        self.dst = dst
        self.name = f"{src}->{dst}"
        self.base_bytes_per_s = gbps * 1e9 / 8
        self.capacity_bytes_per_s = self.base_bytes_per_s
        self.rtt_ms = rtt_ms
        self.one_way_s = rtt_ms / 2000.0
        self.flows: dict[int, Flow] = {}  # by join order
        self._last = 0.0
        self._gen = 0
        self._seq = 0
        self._tracking = True  # see the module docstring; trivially true with no flows
        self._prod_sum = 0.0  # tracking mode: sum of production rates = total sending rate
        self._ends: list[tuple[float, int, Flow]] = []  # tracking mode: (p1, join seq, flow)
        self._timer_at = math.inf  # tracking mode: when the current timer fires
        self.sent_bytes = 0.0  # cumulative
        self.sampled_bytes = 0.0  # cumulative at the last sample
        self.ewma_bytes_per_s = 0.0
        self.transfers = 0

    # -- public ---------------------------------------------------------------------------
    def start(
        self, size: float, p0: float, p1: float, on_done: Callable[[Any], None], arg: Any
    ) -> None:
        """Begin a transfer now (now == p0 for a pipelined KV transfer, p1 <= p0 for a bulk one)."""
        now = self.kernel.now
        self.transfers += 1
        if size <= 0:
            self.kernel.at(now + self.one_way_s, on_done, arg)
            return
        self._advance(now)
        flow = Flow(size, p0, p1, on_done, arg)
        self._seq += 1
        self.flows[self._seq] = flow
        if self._tracking and now < p1 and self._fits(self._prod_sum + flow.prod):
            self._track(now, self._seq, flow)
            return
        self._leave_tracking(now)
        self._reallocate(now)

    def set_factor(self, factor: float) -> None:
        """Scale the capacity to factor x nominal (a bandwidth-schedule change point)."""
        now = self.kernel.now
        self._advance(now)
        self.capacity_bytes_per_s = self.base_bytes_per_s * factor
        if self._tracking and self._fits(self._prod_sum):
            return  # every flow still gets its production rate
        self._leave_tracking(now)
        self._reallocate(now)

    def sample(self, interval_s: float, alpha: float) -> float:
        """Bytes sent since the last sample; also folds the rate into the EWMA."""
        self._advance(self.kernel.now)
        sent = self.sent_bytes - self.sampled_bytes
        self.sampled_bytes = self.sent_bytes
        self.ewma_bytes_per_s += alpha * (sent / interval_s - self.ewma_bytes_per_s)
        return sent

    def backlog_bytes(self) -> float:
        """Produced but not yet sent (what a sender's queue would hold)."""
        now = self.kernel.now
        self._advance(now)
        if self._tracking:
            return 0.0  # every flow has sent all it produced
        total = 0.0
        for f in self.flows.values():
            total += max(0.0, f.available(now) - f.sent)
        return total

    @property
    def capacity_gbps(self) -> float:
        return self.capacity_bytes_per_s * 8 / 1e9

    # -- fluid model ----------------------------------------------------------------------
    def _fits(self, prod_sum: float) -> bool:
        """Production rates that the capacity carries in full (with margin for rounding)."""
        return prod_sum <= self.capacity_bytes_per_s * (1 - 1e-9)

    def _track(self, now: float, seq: int, flow: Flow) -> None:
        flow.rate = flow.prod
        flow.capped = True
        flow.t0 = now
        self._prod_sum += flow.prod
        heapq.heappush(self._ends, (flow.p1, seq, flow))
        if flow.p1 < self._timer_at:
            self._arm(flow.p1)

    def _arm(self, at: float) -> None:
        self._gen += 1
        self._timer_at = at
        self.kernel.at(at, self._on_timer, self._gen)

    def _leave_tracking(self, now: float) -> None:
        """Bring every flow's sent bytes up to now; the fair-share code takes over."""
        if not self._tracking:
            return
        self._tracking = False
        for f in self.flows.values():
            f.sent += f.rate * (now - f.t0)
        self._ends.clear()
        self._timer_at = math.inf

    def _enter_tracking(self, now: float) -> None:
        """After a reallocation: switch to tracking mode if every flow runs at its production."""
        flows = self.flows.values()
        if not all(f.capped and f.rate == f.prod for f in flows):
            return
        prod_sum = math.fsum(f.prod for f in flows)
        if not self._fits(prod_sum):
            return
        self._tracking = True
        self._prod_sum = prod_sum
        self._ends = [(f.p1, seq, f) for seq, f in self.flows.items()]
        heapq.heapify(self._ends)
        for f in flows:
            f.t0 = now
        self._timer_at = math.inf
        if self._ends:
            self._arm(self._ends[0][0])

    def _advance(self, now: float) -> None:
        dt = now - self._last
        if dt > 0 and self._tracking:
            self.sent_bytes += self._prod_sum * dt
            self._last = now
        elif dt > 0:
            moved = 0.0
            for f in self.flows.values():
                step = f.rate * dt
                f.sent += step
                moved += step
            self.sent_bytes += moved
            self._last = now

    def _reallocate(self, now: float) -> None:
        flows = list(self.flows.values())
        if not flows:
            self._tracking, self._prod_sum, self._timer_at = True, 0.0, math.inf
            return
        n = len(flows)
        for f in flows:
            f.capped = now < f.p1 and f.sent >= f.available(now) - _tolerance(f.size)
        remaining = self.capacity_bytes_per_s
        capped = sorted((f for f in flows if f.capped), key=lambda f: f.prod)
        left = n
        satisfied = 0
        for f in capped:
            if f.prod > remaining / left:
                break
            f.rate = f.prod
            remaining -= f.prod
            left -= 1
            satisfied += 1
        share = remaining / left if left else 0.0
        done = {id(f) for f in capped[:satisfied]}
        for f in flows:
            if id(f) not in done:
                f.rate = share
        self._schedule_next(now)
        self._enter_tracking(now)

    def _schedule_next(self, now: float) -> None:
        nxt = math.inf
        for f in self.flows.values():
            if f.rate > 0:
                # A flow cannot finish before its last byte is produced (the byte slack in
                # _tolerance would otherwise end slow-producer flows early).
                end = now + (f.size - f.sent) / f.rate
                nxt = min(nxt, max(end, f.p1) if now < f.p1 else end)
                if not f.capped and now < f.p1 and f.rate > f.prod:
                    catch = now + (f.available(now) - f.sent) / (f.rate - f.prod)
                    if catch < f.p1:
                        nxt = min(nxt, catch)
        self._gen += 1
        if nxt < math.inf:
            self.kernel.at(nxt, self._on_timer, self._gen)

    def _on_timer(self, gen: int) -> None:
        if gen != self._gen:
            return  # superseded by a later reallocation
        now = self.kernel.now
        self._advance(now)
        if self._tracking:
            self._end_tracked(now)
            return
        for seq, f in list(self.flows.items()):
            if f.sent >= f.size - _tolerance(f.size) and now >= f.p1:
                self.kernel.at(now + self.one_way_s, f.on_done, f.arg)
                del self.flows[seq]
        self._reallocate(now)

    def _end_tracked(self, now: float) -> None:
        """Tracking mode: flows whose production has ended have sent everything; they end now."""
        ends = self._ends
        while ends and ends[0][0] <= now:
            _, seq, f = heapq.heappop(ends)
            del self.flows[seq]
            self._prod_sum -= f.prod
            self.kernel.at(now + self.one_way_s, f.on_done, f.arg)
        self._timer_at = math.inf
        if ends:
            self._arm(ends[0][0])
        else:
            self._prod_sum = 0.0  # no rounding residue carried into the next busy period
