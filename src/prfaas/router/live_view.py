"""The router's state -> the inputs of router/adapter.py (membership records, link telemetry and
index matches), which builds the same frozen ClusterView the simulator's adapter builds."""

from __future__ import annotations

from prfaas.core.view import UNBOUNDED_KV_BYTES
from prfaas.deploy.config import DeploymentConfig
from prfaas.policy.placement import Placement
from prfaas.router.adapter import MembershipRecord, TransferTelemetry
from prfaas.router.bandwidth import BandwidthMonitor
from prfaas.router.membership import Membership, NodeRecord


def membership_record(
    rec: NodeRecord, cfg: DeploymentConfig, shared: bool = False
) -> MembershipRecord:
    """Queues from the router's own dispatch counts (exact, current); memory from telemetry.

    `shared`: other router replicas dispatch to the same nodes, and this one cannot see their
    work. Each count is then the larger of its own (current, but partial) and the node's
    published one (complete, but up to one telemetry period old): never below either.
    """
    beat = rec.beat
    # A decode node's telemetry reports its prefix pool, not decode KV memory, which no live
    # engine bounds; a value from telemetry would also rank a node by whether its first beat
    # has arrived (0 before it), a tie-break the simulator never sees.
    free = UNBOUNDED_KV_BYTES if rec.role == "decode" else beat.free_kv_bytes if beat else 0
    cluster_role = cfg.cluster(rec.cluster).role
    pub_queue = pub_running = pub_tokens = 0
    if shared and beat is not None:
        pub_queue, pub_running, pub_tokens = beat.queue_len, beat.running, beat.queued_tokens
    if rec.role == "prefill":
        inflight = max(rec.prefill_inflight, pub_queue + pub_running)
        running = min(inflight, 1)  # an instance prefills one request at a time
        queue, tokens, batch = inflight - running, max(rec.prefill_tokens, pub_tokens), 1
    else:
        # A request whose KV has not arrived is waiting, not running (as the simulator counts it):
        # only nodes with nothing pending and a free slot "fit" a new request at once.
        arrived = max(rec.decode_active - rec.decode_pending, pub_running)
        running = min(arrived, rec.max_batch)
        pending = max(rec.decode_pending, pub_queue)
        queue, tokens, batch = pending + arrived - running, 0, rec.max_batch
    return MembershipRecord(
        node_id=rec.name,
        cluster=rec.cluster,
        cluster_role=cluster_role,  # type: ignore[arg-type]
        role=rec.role,  # type: ignore[arg-type]
        last_heartbeat_s=rec.last_seen,
        queue_len=queue,
        queued_tokens=tokens,
        running=running,
        max_batch=batch,
        free_kv_bytes=free,
        draining=rec.draining or rec.converting,
    )


def membership_records(members: Membership) -> list[MembershipRecord]:
    """Only nodes the router can reach: alive (registered, no connection failure since)."""
    shared = members.replicas > 1
    return [membership_record(r, members.cfg, shared)
            for r in members.nodes.values() if r.alive and r.url]


def telemetry(bandwidth: BandwidthMonitor) -> list[TransferTelemetry]:
    return [
        TransferTelemetry(
            s.src,
            s.dst,
            s.capacity_gbps,
            s.egress_gbps,
            s.in_flight_bytes,
            s.rtt_ms,
            s.retransmit_rate,
        )
        for s in bandwidth.links.values()
    ]


def index_match(members: Membership, per_node: dict[str, int]) -> dict[str, int]:
    """Per-node matches plus each cluster's best: a prefix anywhere in a cluster is reusable by any
    of its nodes, because the router then issues an intra-cluster pull (a cluster-wide pool)."""
    out: dict[str, int] = {}
    for node, blocks in per_node.items():
        rec = members.nodes.get(node)
        if rec is None or not rec.alive:
            continue
        out[node] = blocks
        out[rec.cluster] = max(out.get(rec.cluster, 0), blocks)
    return out


def held_tokens(
    members: Membership, p: Placement, per_node: dict[str, int], n_tokens: int, block: int
) -> int:
    """Tokens of this prompt's prefix the decode node's cluster holds (0 unless offloaded)."""
    if not p.offloaded:
        return 0
    cluster = members.nodes[p.decode_node].cluster
    blocks = max((b for n, b in per_node.items() if members.nodes[n].cluster == cluster), default=0)
    return min(blocks * block, n_tokens)
