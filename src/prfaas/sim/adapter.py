"""The simulator's adapter: its internal state -> the frozen ClusterView the policy decides on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prfaas.core.request import RequestSpec
from prfaas.core.view import CacheMatch, ClusterView, LinkView

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation


class SimAdapter:
    """Builds views in canonical order: clusters by name, nodes by id, links by (src, dst)."""

    __slots__ = ("links", "sim")

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.links = [link for _, link in sorted(sim.links.items())]  # fixed for the run

    def view(self, spec: RequestSpec, *, keep: bool = False) -> ClusterView:
        """The view for this decision; `keep` makes it self-contained (valid after the decision,
        O(n)), otherwise clusters are views over their live indexes (O(log n) per query)."""
        sim = self.sim
        clusters = tuple(c.snapshot() if keep else c.view() for c in sim.clusters)
        links = tuple(
            LinkView(
                src=link.src,
                dst=link.dst,
                capacity_gbps=link.capacity_gbps,
                egress_gbps=link.ewma_bytes_per_s * 8 / 1e9,
                in_flight_bytes=int(link.backlog_bytes()),
                rtt_ms=link.rtt_ms,
                retransmit_rate=0.0,
            )
            for link in self.links
        )
        matches: list[CacheMatch] = []
        if spec.block_hashes:
            for c in sim.clusters:
                if c.pool is not None:
                    m = c.pool.peek(spec.block_hashes)
                    if m.usable_blocks:
                        matches.append(CacheMatch(c.name, m.usable_tokens))
        return ClusterView(
            sim.kernel.now, clusters, links, tuple(matches), sim.arrival_gaps.cv()
        )
