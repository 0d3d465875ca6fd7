"""Simulated prefill instances (FIFO queue, optional chunked batching) and the job they carry."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from prfaas.cache.pool import HybridPrefixPool
from prfaas.core.lifecycle import RequestRecord
from prfaas.core.request import RequestSpec
from prfaas.core.view import NodeView
from prfaas.policy.placement import Placement
from prfaas.sim.viewcache import CachedViewNode

if TYPE_CHECKING:
    from prfaas.sim.decode_node import DecodeNode
    from prfaas.sim.engine import Simulation


class Job:
    """Simulator-side state of one request on its way through the nodes."""

    __slots__ = (
        "cluster",
        "decode",
        "hashes",
        "inc",
        "kv_bytes",
        "kv_ready",
        "p1",
        "placement",
        "prefill",
        "record",
        "spec",
        "xfer_bytes",
    )

    def __init__(
        self,
        record: RequestRecord,
        placement: Placement,
        prefill: PrefillNode,
        decode: DecodeNode,
        hashes: tuple[int, ...],
        kv_bytes: int,
    ) -> None:
        self.record = record
        self.spec: RequestSpec = record.spec
        self.placement = placement
        self.prefill = prefill
        self.decode = decode
        self.cluster = prefill.cluster
        self.hashes = hashes  # full blocks only: a trailing partial block is never reusable
        self.inc = record.spec.input_tokens - placement.prefix_tokens  # estimate until start
        self.kv_bytes = kv_bytes  # decode-side reservation: S_kv(input + output)
        self.kv_ready = False
        self.xfer_bytes = 0.0  # bytes that cross the inter-cluster link after prefill
        self.p1 = 0.0  # when the prefill producing them ends


class PrefillNode(CachedViewNode):
    """One prefill instance: FIFO; a batch of jobs runs for T(l) of their incremental lengths."""

    __slots__ = (
        "busy",
        "busy_s",
        "chunk_tokens",
        "cluster",
        "draining",
        "node_id",
        "pending",
        "pool",
        "queue",
        "queued_tokens",
        "running",
        "sim",
        "t0",
        "tailing",
        "time_fn",
    )
    role = "prefill"

    def __init__(
        self,
        sim: Simulation,
        node_id: str,
        cluster: str,
        time_fn: Callable[[float], float],
        chunk_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.sim = sim
        self.node_id = node_id
        self.cluster = cluster
        self.time_fn = time_fn
        self.t0 = time_fn(0.0)  # fixed per-forward overhead, paid once per batch
        self.chunk_tokens = chunk_tokens
        self.queue: deque[Job] = deque()
        self.busy = False
        self.running = 0
        self.pending = 0  # routed here, waiting for a cache pull
        self.queued_tokens = 0
        self.tailing = 0  # computed, KV not yet delivered, still counted (routed_queue_tokens)
        self.draining = False
        self.busy_s = 0.0
        self.pool: HybridPrefixPool | None = None  # its own prefix pool (SimSetup.node_pools)

    def view(self) -> NodeView:
        v = self._view
        if v is None:
            # The live router counts a job from routing to its reply (KV delivered): one of its
            # in-flight jobs runs, the rest queue, whichever is computing.
            running = self.running or min(self.tailing, 1)
            waiting = len(self.queue) + self.pending + self.running + self.tailing - running
            v = self._view = NodeView(
                self.node_id,
                "prefill",
                waiting,
                self.queued_tokens,
                running,
                1,
                0,
                self.draining,
            )
        return v

    def delivered(self, job: Job) -> None:
        """`job`'s KV reached its decode node: the router's reply frees its queued work."""
        self.tailing -= 1
        self.queued_tokens -= job.inc
        self.touch()

    def reserve(self, job: Job) -> None:
        """Count a job whose cache pull is still in flight as queued work here."""
        self.pending += 1
        self.queued_tokens += job.inc
        self.touch()

    def submit(self, job: Job, reserved: bool = False) -> None:
        if reserved:
            self.pending -= 1
        else:
            self.queued_tokens += job.inc
        self.queue.append(job)
        self.touch()
        if not self.busy:
            self._start()

    def idle(self) -> bool:
        return not self.busy and not self.queue and not self.pending

    def _start(self) -> None:
        queue = self.queue
        batch = [queue.popleft()]
        budget = self.chunk_tokens - batch[0].inc
        while budget > 0 and queue and queue[0].inc <= budget:
            budget -= queue[0].inc
            batch.append(queue.popleft())
        start = self.sim.kernel.now
        service = self.t0
        for job in batch:
            service += self.sim.prefill_started(job, start) - self.t0
        self.busy = True
        self.running = len(batch)
        self.busy_s += service
        self.touch()
        self.sim.kernel.at(start + service, self._finish, batch)
        for job in batch:
            self.sim.prefill_pipelined(job, start, service)

    def _finish(self, batch: list[Job]) -> None:
        hold = self.sim.setup.routed_queue_tokens
        for job in batch:
            if hold:
                self.tailing += 1  # until delivered()
            else:
                self.queued_tokens -= job.inc
            self.sim.prefill_finished(job)
        self.busy = False
        self.running = 0
        self.touch()
        if self.queue:
            self._start()
        elif self.draining and not self.pending:
            self.sim.node_drained(self)
