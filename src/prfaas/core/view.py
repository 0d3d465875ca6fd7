"""Frozen snapshots the policy decides on: clusters, nodes, links and this request's cache matches.

Two adapters build these: the simulator's (from its own state) and the live router's (from
heartbeats, transfer telemetry and the global prefix index). The policy sees nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NodeRole = Literal["prefill", "decode"]
ClusterRole = Literal["prfaas", "pd"]


@dataclass(frozen=True, slots=True)
class NodeView:
    """One instance (e.g. 8 GPUs) as the router sees it."""

    node_id: str
    role: NodeRole
    queue_len: int  # requests waiting (not yet running)
    queued_tokens: int  # incremental prefill tokens waiting or running (prefill); 0 for decode
    running: int  # requests in the running batch
    max_batch: int  # batch slots (BS_max for decode, 1 for a prefill instance)
    free_kv_bytes: int  # KV memory still unreserved (decode); 0 when unknown
    draining: bool = False  # changing role: takes no new work


@dataclass(frozen=True, slots=True)
class ClusterState:
    """A cluster: a compute-dense PrfaaS cluster (prefill only) or a local PD cluster."""

    name: str
    role: ClusterRole
    nodes: tuple[NodeView, ...]

    def active(self, role: NodeRole) -> tuple[NodeView, ...]:
        """Nodes of `role` that accept new work."""
        return tuple(n for n in self.nodes if n.role == role and not n.draining)


@dataclass(frozen=True, slots=True)
class LinkView:
    """One direction of an inter-cluster link, with transport telemetry."""

    src: str
    dst: str
    capacity_gbps: float  # what the link can carry now (schedule or estimate)
    egress_gbps: float  # EWMA of the measured sending rate
    in_flight_bytes: int  # accepted for sending but not yet delivered
    rtt_ms: float
    retransmit_rate: float  # fraction of segments retransmitted (0 when unknown)

    @property
    def utilisation(self) -> float:
        """egress / capacity, in [0, inf); 1.0 means the link is full."""
        if self.capacity_gbps <= 0:
            return float("inf") if self.egress_gbps > 0 or self.in_flight_bytes > 0 else 0.0
        return self.egress_gbps / self.capacity_gbps

    @property
    def drain_s(self) -> float:
        """Seconds to deliver what is already in flight at the current capacity."""
        if self.in_flight_bytes <= 0:
            return 0.0
        if self.capacity_gbps <= 0:
            return float("inf")
        return self.in_flight_bytes * 8 / (self.capacity_gbps * 1e9)


@dataclass(frozen=True, slots=True)
class CacheMatch:
    """This request's reusable prefix (tokens) at a cluster, or at one node when `node` is set."""

    cluster: str
    tokens: int
    node: str | None = None


@dataclass(frozen=True, slots=True)
class ClusterView:
    """Everything a routing decision may depend on, at `now_s`."""

    now_s: float
    clusters: tuple[ClusterState, ...]
    links: tuple[LinkView, ...]
    matches: tuple[CacheMatch, ...] = ()
    # Derived once: policies ask "which clusters have this role" several times per decision.
    _roles: dict[str, tuple[ClusterState, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        roles: dict[str, list[ClusterState]] = {}
        for c in self.clusters:
            roles.setdefault(c.role, []).append(c)
        object.__setattr__(self, "_roles", {k: tuple(v) for k, v in roles.items()})

    def cluster(self, name: str) -> ClusterState:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(f"no cluster named {name!r} in the view")

    def by_role(self, role: ClusterRole) -> tuple[ClusterState, ...]:
        return self._roles.get(role, ())

    def link(self, src: str, dst: str) -> LinkView | None:
        for link in self.links:
            if link.src == src and link.dst == dst:
                return link
        return None

    def prefix_tokens(self, cluster: str) -> int:
        """Longest reusable prefix this request has anywhere in `cluster`."""
        best = 0
        for m in self.matches:
            if m.cluster == cluster and m.tokens > best:
                best = m.tokens
        return best

    def node_prefix_tokens(self, cluster: str, node_id: str) -> int:
        """Prefix reusable on `node_id`: its own match or the cluster-wide pool's, the longer."""
        best = 0
        for m in self.matches:
            if m.cluster == cluster and (m.node is None or m.node == node_id) and m.tokens > best:
                best = m.tokens
        return best

    def node_cluster(self, node_id: str) -> ClusterState:
        for c in self.clusters:
            for n in c.nodes:
                if n.node_id == node_id:
                    return c
        raise KeyError(f"no node named {node_id!r} in the view")
