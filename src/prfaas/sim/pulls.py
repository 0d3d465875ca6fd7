"""Cross-cluster cache pulls in the simulator: the prefix crosses the link, then the job queues."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from prfaas.core.lifecycle import Phase
from prfaas.sim.link import FluidLink
from prfaas.sim.nodes import Job

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation


def start_pull(sim: Simulation, job: Job) -> None:
    """Reserve the prefill node and pull the prefix across the link before the job queues."""
    pull = job.placement.cache_pull
    assert pull is not None
    rec = job.record
    rec.advance(Phase.CACHE_PULL, sim.kernel.now)
    job.prefill.reserve(job)
    nbytes = sim.state_bytes + sim.kv_per_token * max(pull.tokens - pull.from_tokens, 0)
    rec.pulled_bytes = int(nbytes)
    link = sim.links[(pull.src_cluster, pull.dst_cluster)]
    # The pull request travels one way before the holder starts sending.
    sim.kernel.at(sim.kernel.now + link.one_way_s, partial(_send_pull, sim), (job, nbytes, link))


def _send_pull(sim: Simulation, arg: tuple[Job, float, FluidLink]) -> None:
    job, nbytes, link = arg
    now = sim.kernel.now
    link.start(nbytes, now, now, partial(_pull_done, sim), job)


def _pull_done(sim: Simulation, job: Job) -> None:
    pull = job.placement.cache_pull
    assert pull is not None
    pool = sim.by_name[pull.dst_cluster].pool
    if pool is not None:
        n = min(pull.tokens // sim.setup.block_tokens, len(job.hashes))
        if n > 0:
            pool.insert(job.hashes[:n], state_payloads={n - 1: None})
    job.record.advance(Phase.PREFILL_QUEUED, sim.kernel.now)
    job.prefill.submit(job, reserved=True)
