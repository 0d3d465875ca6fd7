"""The simulator's time series: what it samples every interval (links, queues, waiting)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation


def sample_series(sim: Simulation) -> None:
    """One sample of the run's time series: link goodput and capacity, queue depths, waiting."""
    s = sim.series
    s.times_s.append(sim.kernel.now)
    for link in sim.links.values():
        s.link_sent_bytes.setdefault(link.name, []).append(link.sample(s.interval_s, sim._alpha))
        s.link_capacity_gbps.setdefault(link.name, []).append(link.capacity_gbps)
    waiting = 0
    for c in sim.clusters:
        depth = 0
        for n in c.nodes:  # one pass: this runs every sample over every node of the fleet
            if n.role == "prefill":
                depth += len(n.queue) + n.pending  # type: ignore[union-attr]
            else:
                waiting += len(n.waiting)  # type: ignore[union-attr]
        s.queue_depth.setdefault(c.name, []).append(depth)
        waiting += depth
    s.waiting.append(waiting + sim.tails)
