"""Frozen snapshots the policy decides on: clusters, nodes, links and this request's cache matches.

Two adapters build these: the simulator's (from its own state) and the live router's (from
heartbeats, transfer telemetry and the global prefix index). The policy sees nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from prfaas.core.ties import TIE_GROUP, pick

if TYPE_CHECKING:
    from prfaas.core.fleet import ClusterIndex

NodeRole = Literal["prefill", "decode"]
ClusterRole = Literal["prfaas", "pd"]

# Free KV memory of a decode node that does not bound it (every live engine; the simulator's
# mirror of a live file): one constant on both sides, so equal loads tie alike in both drivers.
UNBOUNDED_KV_BYTES = 1 << 62


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


def decode_load(node: NodeView) -> float:
    """Requests per batch slot, running or waiting (the decode ranking's first key)."""
    return (node.running + node.queue_len) / max(node.max_batch, 1)


def decode_fits(node: NodeView, kv_bytes: int) -> bool:
    """Room right now: nothing waiting, a free slot, and enough free KV memory."""
    return node.queue_len == 0 and node.running < node.max_batch and node.free_kv_bytes >= kv_bytes


class ClusterState:
    """A cluster: a compute-dense PrfaaS cluster (prefill only) or a local PD cluster.

    Built from a tuple of nodes, or over a driver's ClusterIndex (core/fleet.py) so a routing
    decision costs O(log n): the node tuple is then materialised only if someone reads it, and
    only while the index is unchanged (a view over an index is valid during its decision only).
    """

    __slots__ = ("_built_at", "_index", "_nodes", "name", "role")

    def __init__(
        self,
        name: str,
        role: ClusterRole,
        nodes: tuple[NodeView, ...] = (),
        index: ClusterIndex | None = None,
    ) -> None:
        self.name = name
        self.role = role
        self._nodes: tuple[NodeView, ...] | None = None if index is not None else tuple(nodes)
        self._index = index
        self._built_at = index.version if index is not None else 0

    @property
    def nodes(self) -> tuple[NodeView, ...]:
        if self._nodes is None:
            self._nodes = self._live_index().snapshot()
        return self._nodes

    def _live_index(self) -> ClusterIndex:
        index = self._index
        assert index is not None
        if index.version != self._built_at:
            raise RuntimeError(f"view of cluster {self.name!r} read after its nodes changed")
        return index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClusterState):
            return NotImplemented
        return (self.name, self.role, self.nodes) == (other.name, other.role, other.nodes)

    def __hash__(self) -> int:
        return hash((self.name, self.role, self.nodes))

    def __repr__(self) -> str:
        return f"ClusterState(name={self.name!r}, role={self.role!r}, nodes={self.nodes!r})"

    def size(self) -> int:
        """Number of nodes (O(1) over an index)."""
        if self._index is not None:
            return len(self._live_index())
        return len(self.nodes)

    def active(self, role: NodeRole) -> tuple[NodeView, ...]:
        """Nodes of `role` that accept new work."""
        return tuple(n for n in self.nodes if n.role == role and not n.draining)

    # -- routing queries: O(log n) over an index, an exhaustive scan otherwise --------------
    def node(self, node_id: str) -> NodeView | None:
        if self._index is not None:
            return self._live_index().get(node_id)
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        return None

    def least_work_prefill(self, seed: int = 0) -> NodeView | None:
        """The active prefill node with the fewest queued tokens (ties: core/ties.py)."""
        if self._index is not None:
            return self._live_index().least_work_prefill(seed)
        return _first_tied(
            (((n.queued_tokens,), n) for n in self.nodes if n.role == "prefill" and not n.draining),
            seed,
        )

    def soonest_decode(self, kv_bytes: int, seed: int = 0) -> NodeView | None:
        """The active decode node that can admit soonest: fits now first, then the lowest
        (load, -free KV); ties as core/ties.py breaks them."""
        if self._index is not None:
            return self._live_index().soonest_decode(kv_bytes, seed)
        return _first_tied(
            (
                ((0 if decode_fits(n, kv_bytes) else 1, decode_load(n), -n.free_kv_bytes), n)
                for n in self.nodes
                if n.role == "decode" and not n.draining
            ),
            seed,
        )

    def prefill_queue(self) -> tuple[int, int]:
        """(waiting requests summed over active prefill nodes, number of those nodes)."""
        if self._index is not None:
            return self._live_index().prefill_queue()
        total = count = 0
        for n in self.nodes:
            if n.role == "prefill" and not n.draining:
                total += n.queue_len
                count += 1
        return total, count

    def idle_prefill(self) -> int:
        """Active prefill nodes with no queued tokens."""
        if self._index is not None:
            return self._live_index().idle_prefill()
        return sum(
            1 for n in self.nodes
            if n.role == "prefill" and not n.draining and n.queued_tokens == 0
        )


def _first_tied(ranked: Iterable[tuple[tuple[float, ...], NodeView]], seed: int) -> NodeView | None:
    """Of the nodes with the lowest rank, the first TIE_GROUP by id, the one `seed` prefers."""
    best = sorted(ranked, key=lambda r: (r[0], r[1].node_id))
    tied = [n for rank, n in best if rank == best[0][0]][:TIE_GROUP] if best else []
    return pick(tied, seed) if tied else None


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
    # Inter-arrival CV of the driver's recent arrivals (core/arrivals.py); None: not known yet.
    arrival_cv: float | None = None
    # Derived once: policies ask "which clusters have this role" several times per decision.
    _roles: dict[str, tuple[ClusterState, ...]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # Per cluster: the cluster-wide pool's prefix, and node-local holders (id -> tokens).
    _pool: dict[str, int] = field(init=False, repr=False, compare=False, default_factory=dict)
    _holders: dict[str, dict[str, int]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        roles: dict[str, list[ClusterState]] = {}
        for c in self.clusters:
            roles.setdefault(c.role, []).append(c)
        object.__setattr__(self, "_roles", {k: tuple(v) for k, v in roles.items()})
        for m in self.matches:
            if m.node is None:
                self._pool[m.cluster] = max(self._pool.get(m.cluster, 0), m.tokens)
            else:
                held = self._holders.setdefault(m.cluster, {})
                held[m.node] = max(held.get(m.node, 0), m.tokens)

    def pool_prefix_tokens(self, cluster: str) -> int:
        """Prefix reusable by any node of `cluster` (its cluster-wide pool's match)."""
        return self._pool.get(cluster, 0)

    def prefix_holders(self, cluster: str) -> dict[str, int]:
        """Nodes of `cluster` with a node-local match: id -> tokens (usually a handful)."""
        return self._holders.get(cluster, {})

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
            if c.node(node_id) is not None:  # O(1) over an index: admission asks per decision
                return c
        raise KeyError(f"no node named {node_id!r} in the view")
