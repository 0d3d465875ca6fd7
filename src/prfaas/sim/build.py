"""Building a simulation's clusters and links from its setup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prfaas.cache.pool import HybridPrefixPool
from prfaas.sim.link import FluidLink
from prfaas.sim.setup import ClusterSpec
from prfaas.sim.state import SimCluster

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation


def build_cluster(sim: Simulation, spec: ClusterSpec) -> SimCluster:
    """A cluster of `spec` with its prefill and decode nodes and its prefix pool (if any)."""
    pool = None
    if spec.cache_bytes > 0:
        pool = HybridPrefixPool(
            spec.cache_bytes,
            sim.setup.block_tokens,
            int(sim.kv_per_token),
            int(sim.state_bytes),
        )
    cluster = SimCluster(spec, pool)
    count = spec.prefill_nodes + spec.decode_nodes
    if spec.node_ids and len(spec.node_ids) != count:
        raise ValueError(f"cluster {spec.name}: {len(spec.node_ids)} ids for {count} nodes")
    for i in range(count):
        node_id = spec.node_ids[i] if spec.node_ids else f"{spec.name}-{i:02d}"
        if i < spec.prefill_nodes:
            cluster.add(sim.make_prefill_node(node_id, cluster))
        else:
            cluster.add(sim.make_decode_node(node_id, spec.name))
    return cluster


def build_links(sim: Simulation) -> dict[tuple[str, str], FluidLink]:
    """One fluid link per ordered pair of clusters, at the setup's rate and RTT."""
    links: dict[tuple[str, str], FluidLink] = {}
    for a in sim.clusters:
        for b in sim.clusters:
            if a is not b:
                links[(a.name, b.name)] = FluidLink(
                    sim.kernel, a.name, b.name, sim.setup.link_gbps, sim.setup.rtt_ms
                )
    return links
