"""Per-node prefix pools: the simulator's mirror of the live workers' own pools (node_pools).

A live prefill node reuses, when its job starts, only what its own pool holds: the prefixes of
the prompts it prefilled and the prefix the router counted on when routing, which the worker
pulls (from a sibling or across the link) when the job's turn comes, not before. The simulated
cluster-wide pool would also serve a block a sibling node cached after the routing decision; a
prefill that reuses one block more runs T(l) shorter, which shifts every later event on that node.
The cluster pool still answers routing queries (the router's global index does so live).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prfaas.cache.pool import HybridPrefixPool
from prfaas.policy.placement import Placement

if TYPE_CHECKING:
    from prfaas.sim.engine import Simulation
    from prfaas.sim.state import SimCluster


def node_pool(sim: Simulation, cluster: SimCluster) -> HybridPrefixPool | None:
    """A prefill node's own pool (its share of the cluster's), or None without node_pools."""
    spec = cluster.spec
    if not sim.setup.node_pools or spec.cache_bytes <= 0 or spec.prefill_nodes <= 0:
        return None
    return HybridPrefixPool(
        spec.cache_bytes // spec.prefill_nodes,
        sim.setup.block_tokens,
        int(sim.kv_per_token),
        int(sim.state_bytes),
    )


def hold(pool: HybridPrefixPool | None, hashes: Sequence[int], blocks: int) -> None:
    """The node now holds the first `blocks` blocks, with the linear state at their end (what a
    finished prefill checkpoints and what a cache pull imports)."""
    blocks = min(blocks, len(hashes))
    if pool is not None and blocks > 0:
        pool.insert(hashes[:blocks], state_payloads={blocks - 1: None})


def counted_blocks(p: Placement, block_tokens: int) -> int:
    """Blocks of the prefix the decision counted on, which the live worker pulls in when its
    job starts unless it holds them (router/transfer_setup.pull_spec)."""
    tokens = p.cache_pull.tokens if p.cache_pull is not None else p.prefix_tokens
    return tokens // block_tokens
