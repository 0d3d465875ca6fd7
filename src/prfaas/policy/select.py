"""Node choice inside a cluster: prefix-affine least-work prefill, least-loaded decode.

Each cluster answers "least-work prefill node" and "soonest decode node" itself (in O(log n) when
its driver keeps a ClusterIndex); only the few nodes holding a node-local prefix are scored apart.
"""

from __future__ import annotations

from prfaas.core.request import RequestSpec
from prfaas.core.ties import tie_rank, tie_seed
from prfaas.core.view import ClusterState, ClusterView, NodeView, decode_fits, decode_load


def _prefill_candidates(
    view: ClusterView, cluster: ClusterState, request: RequestSpec, seed: int
) -> list[tuple[NodeView, int]]:
    """The least-queued node (it reuses the cluster pool's prefix) plus each prefix holder.

    Any other node reuses only the pool's prefix and queues at least as much, so it cannot win.
    """
    cap = request.input_tokens - 1
    pool = view.pool_prefix_tokens(cluster.name)
    out: list[tuple[NodeView, int]] = []
    least = cluster.least_work_prefill(seed)
    if least is not None:
        out.append((least, min(pool, cap)))
    for node_id, tokens in view.prefix_holders(cluster.name).items():
        node = cluster.node(node_id)
        if node is not None and node.role == "prefill" and not node.draining:
            out.append((node, min(max(pool, tokens), cap)))
    return out


def best_prefill(
    view: ClusterView, clusters: tuple[ClusterState, ...], request: RequestSpec
) -> tuple[NodeView, ClusterState, int] | None:
    """The prefill node where this request adds to the least queued work.

    Work is queued tokens plus this request's incremental tokens on that node, so a node holding a
    longer prefix wins unless its queue outweighs the saving (prefix affinity without hot spots).
    Equal work: the node the request prefers (core/ties.py). Returns (node, its cluster, prefix
    tokens reusable there), or None if no node accepts work.
    """
    seed = tie_seed(request)
    best: tuple[int, tuple[int, str]] | None = None
    chosen: tuple[NodeView, ClusterState, int] | None = None
    for cluster in clusters:
        for node, prefix in _prefill_candidates(view, cluster, request, seed):
            key = (node.queued_tokens + request.input_tokens - prefix, tie_rank(node.node_id, seed))
            if best is None or key < best:
                best = key
                chosen = (node, cluster, prefix)
    return chosen


def best_decode(clusters: tuple[ClusterState, ...], request: RequestSpec) -> NodeView | None:
    """The decode node that can admit soonest: room now first, then fewest per slot, most memory;
    equal ranks go to the node the request prefers (core/ties.py), the same in every driver."""
    seed = tie_seed(request)
    best: tuple[int, float, int, tuple[int, str]] | None = None
    chosen: NodeView | None = None
    for cluster in clusters:
        node = cluster.soonest_decode(request.kv_bytes, seed)
        if node is None:
            continue
        fits = 0 if decode_fits(node, request.kv_bytes) else 1
        key = (fits, decode_load(node), -node.free_kv_bytes, tie_rank(node.node_id, seed))
        if best is None or key < best:
            best = key
            chosen = node
    return chosen


def queue_per_node(clusters: tuple[ClusterState, ...]) -> float:
    """Mean waiting requests per active prefill node (0 when there are none)."""
    total = 0
    count = 0
    for cluster in clusters:
        t, c = cluster.prefill_queue()
        total += t
        count += c
    return total / count if count else 0.0
