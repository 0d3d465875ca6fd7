"""The live router's adapter: heartbeats, transfer telemetry and the global prefix index's answer
-> the same frozen ClusterView the simulator builds, so both drive one policy.

Canonical order (shared with the simulator's adapter): clusters by name, nodes by id, links by
(src, dst), cache matches by (cluster, node). Nodes whose last heartbeat is older than the timeout
are left out: the policy never routes to a node the router cannot hear.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prfaas.core.request import RequestSpec
from prfaas.core.view import (
    CacheMatch,
    ClusterRole,
    ClusterState,
    ClusterView,
    LinkView,
    NodeRole,
    NodeView,
)
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement
from prfaas.policy.registry import get_policy


@dataclass(frozen=True, slots=True)
class MembershipRecord:
    """What a node's latest heartbeat said (plus the router's own count of work it sent there)."""

    node_id: str
    cluster: str
    cluster_role: ClusterRole
    role: NodeRole
    last_heartbeat_s: float
    queue_len: int
    queued_tokens: int
    running: int
    max_batch: int
    free_kv_bytes: int
    draining: bool = False

    def node_view(self) -> NodeView:
        """The policy's view of this node (one conversion for the adapter and the fleet view)."""
        return NodeView(
            self.node_id, self.role, self.queue_len, self.queued_tokens, self.running,
            self.max_batch, self.free_kv_bytes, self.draining,
        )


@dataclass(frozen=True, slots=True)
class TransferTelemetry:
    """A transfer engine's snapshot for one link direction (TCP_INFO-derived in the live system)."""

    src: str
    dst: str
    capacity_gbps: float
    egress_gbps: float
    in_flight_bytes: int
    rtt_ms: float
    retransmit_rate: float = 0.0


def link_views(telemetry: Iterable[TransferTelemetry]) -> tuple[LinkView, ...]:
    """The policy's link views from transfer telemetry, in canonical (src, dst) order."""
    return tuple(
        LinkView(
            t.src, t.dst, t.capacity_gbps, t.egress_gbps, t.in_flight_bytes, t.rtt_ms,
            t.retransmit_rate,
        )
        for t in sorted(telemetry, key=lambda t: (t.src, t.dst))
    )


class RouterAdapter:
    """Builds views from live-style inputs; `route` calls the registered policy on them."""

    def __init__(self, block_tokens: int, heartbeat_timeout_s: float = 5.0) -> None:
        if block_tokens <= 0 or heartbeat_timeout_s <= 0:
            raise ValueError("block_tokens and heartbeat_timeout_s must be positive")
        self.block_tokens = block_tokens
        self.heartbeat_timeout_s = heartbeat_timeout_s

    def build_view(
        self,
        now_s: float,
        members: Iterable[MembershipRecord],
        telemetry: Iterable[TransferTelemetry],
        index_match: Mapping[str, int],
        arrival_cv: float | None = None,
    ) -> ClusterView:
        """`index_match` is GlobalPrefixIndex.match(): usable blocks per location, where a
        location is a cluster name (a cluster-wide pool) or a node id (a node-local pool)."""
        live = [m for m in members if now_s - m.last_heartbeat_s <= self.heartbeat_timeout_s]
        roles: dict[str, ClusterRole] = {}
        nodes: dict[str, list[NodeView]] = {}
        cluster_of: dict[str, str] = {}
        for m in sorted(live, key=lambda m: (m.cluster, m.node_id)):
            roles.setdefault(m.cluster, m.cluster_role)
            cluster_of[m.node_id] = m.cluster
            nodes.setdefault(m.cluster, []).append(m.node_view())
        clusters = tuple(ClusterState(c, roles[c], tuple(nodes[c])) for c in sorted(nodes))
        matches = self._matches(index_match, cluster_of, roles)
        return ClusterView(now_s, clusters, link_views(telemetry), matches, arrival_cv)

    def _matches(
        self,
        index_match: Mapping[str, int],
        cluster_of: Mapping[str, str],
        roles: Mapping[str, ClusterRole],
    ) -> tuple[CacheMatch, ...]:
        out: list[CacheMatch] = []
        for location, blocks in index_match.items():
            if blocks <= 0:
                continue
            tokens = blocks * self.block_tokens
            if location in roles:
                out.append(CacheMatch(location, tokens))
            elif location in cluster_of:
                out.append(CacheMatch(cluster_of[location], tokens, location))
            # else: a location with no live node; its cache is unreachable.
        return tuple(sorted(out, key=lambda m: (m.cluster, m.node or "")))

    def route(
        self,
        policy: str,
        params: PolicyParams,
        request: RequestSpec,
        now_s: float,
        members: Iterable[MembershipRecord],
        telemetry: Iterable[TransferTelemetry],
        index_match: Mapping[str, int],
        arrival_cv: float | None = None,
    ) -> tuple[ClusterView, Placement]:
        view = self.build_view(now_s, members, telemetry, index_match, arrival_cv)
        return view, get_policy(policy)(view, request, params)
