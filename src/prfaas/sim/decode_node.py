"""A simulated decode instance: continuous batching up to BS_max at a fixed step time, with KV
memory that blocks admission."""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from prfaas.core.view import NodeView
from prfaas.sim.kernel import Kernel
from prfaas.sim.viewcache import CachedViewNode

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation
    from prfaas.sim.nodes import Job


class DecodeNode(CachedViewNode):
    """One decode instance: admits FIFO at step boundaries while slots and KV memory allow."""

    __slots__ = (
        "bs_max",
        "chunk_steps",
        "cluster",
        "draining",
        "epoch",
        "kernel",
        "kv_capacity",
        "kv_used",
        "node_id",
        "pending",
        "report_free",
        "running",
        "sim",
        "step_s",
        "waiting",
    )
    role = "decode"

    def __init__(
        self,
        sim: Simulation,
        node_id: str,
        cluster: str,
        bs_max: int,
        step_s: float,
        kv_capacity: int,
        *,
        chunk_steps: int = 1,
        report_free: bool = True,
    ) -> None:
        if chunk_steps < 1:
            raise ValueError("chunk_steps must be >= 1")
        super().__init__()
        self.sim = sim
        self.kernel: Kernel = sim.kernel
        self.chunk_steps = chunk_steps  # steps per batch iteration: joins/leaves on its boundaries
        self.report_free = report_free
        self.node_id = node_id
        self.cluster = cluster
        self.bs_max = bs_max
        self.step_s = step_s
        self.kv_capacity = kv_capacity
        self.kv_used = 0
        self.running = 0
        self.pending = 0  # routed here, KV not yet arrived
        self.waiting: deque[Job] = deque()
        self.epoch = 0.0  # start of the current busy period: steps run on its grid
        self.draining = False

    def view(self) -> NodeView:
        v = self._view
        if v is None:
            v = self._view = NodeView(
                self.node_id,
                "decode",
                len(self.waiting) + self.pending,
                0,
                self.running,
                self.bs_max,
                self.kv_capacity - self.kv_used if self.report_free else self.kv_capacity,
                self.draining,
            )
        return v

    def assign(self) -> None:
        self.pending += 1
        self.touch()

    def submit(self, job: Job) -> None:
        self.pending -= 1
        self.waiting.append(job)
        self._admit()
        self.touch()

    def idle(self) -> bool:
        return not self.running and not self.waiting and not self.pending

    def _admit(self) -> None:
        now = self.kernel.now
        waiting = self.waiting
        period = self.step_s * self.chunk_steps
        while waiting and self.running < self.bs_max:
            job = waiting[0]
            if self.kv_used + job.kv_bytes > self.kv_capacity:
                break  # head-of-line waits for memory (FCFS, like vLLM's scheduler)
            waiting.popleft()
            if self.running == 0:
                self.epoch = now
                t_admit = now
            else:
                steps = math.ceil((now - self.epoch) / period - 1e-9)
                t_admit = self.epoch + steps * period
            self.running += 1
            self.kv_used += job.kv_bytes
            self.sim.decode_admitted(job, t_admit)
            # One token at admission, then chunk_steps tokens per iteration.
            iterations = math.ceil((job.spec.output_tokens - 1) / self.chunk_steps)
            finish = t_admit + iterations * period
            self.kernel.at(finish, self._finish, job)
        self.touch()

    def _finish(self, job: Job) -> None:
        self.running -= 1
        self.kv_used -= job.kv_bytes
        self.sim.decode_finished(job)
        self.touch()
        if self.waiting:
            self._admit()
        if self.draining and self.idle():
            self.sim.node_drained(self)
