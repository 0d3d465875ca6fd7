"""Node choice inside a cluster: prefix-affine least-work prefill, least-loaded decode."""

from __future__ import annotations

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterState, ClusterView, NodeView


def best_prefill(
    view: ClusterView, clusters: tuple[ClusterState, ...], request: RequestSpec
) -> tuple[NodeView, ClusterState, int] | None:
    """The prefill node where this request adds to the least queued work.

    Work is queued tokens plus this request's incremental tokens on that node, so a node holding a
    longer prefix wins unless its queue outweighs the saving (prefix affinity without hot spots).
    Returns (node, its cluster, prefix tokens reusable there), or None if no node accepts work.
    """
    best: tuple[int, str] | None = None
    chosen: tuple[NodeView, ClusterState, int] | None = None
    for cluster in clusters:
        for node in cluster.nodes:
            if node.role != "prefill" or node.draining:
                continue
            prefix = min(
                view.node_prefix_tokens(cluster.name, node.node_id), request.input_tokens - 1
            )
            key = (node.queued_tokens + request.input_tokens - prefix, node.node_id)
            if best is None or key < best:
                best = key
                chosen = (node, cluster, prefix)
    return chosen


def best_decode(clusters: tuple[ClusterState, ...], request: RequestSpec) -> NodeView | None:
    """The decode node that can admit soonest: room now first, then fewest per slot, most memory."""
    best: tuple[int, float, int, str] | None = None
    chosen: NodeView | None = None
    for cluster in clusters:
        for node in cluster.nodes:
            if node.role != "decode" or node.draining:
                continue
            fits = (
                node.queue_len == 0
                and node.running < node.max_batch
                and node.free_kv_bytes >= request.kv_bytes
            )
            load = (node.running + node.queue_len) / max(node.max_batch, 1)
            key = (0 if fits else 1, load, -node.free_kv_bytes, node.node_id)
            if best is None or key < best:
                best = key
                chosen = node
    return chosen


def queue_per_node(clusters: tuple[ClusterState, ...]) -> float:
    """Mean waiting requests per active prefill node (0 when there are none)."""
    total = 0
    count = 0
    for cluster in clusters:
        for node in cluster.nodes:
            if node.role == "prefill" and not node.draining:
                total += node.queue_len
                count += 1
    return total / count if count else 0.0
