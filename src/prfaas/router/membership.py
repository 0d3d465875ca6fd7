"""Who is alive and how loaded: nodes' etcd records, their telemetry, the router's own in-flight
counts, and the global prefix index fed by the nodes' KV event streams.

Liveness, addresses and roles come from etcd (router/cluster_members.py): a node is a member
while its lease lives. Telemetry (every ~0.2 s on the node's event stream) carries load, pool
and link counters. Queue depths come from the router's own dispatch accounting: exact and
current for the work this replica dispatched (see live_view.py for several replicas).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prfaas.cache.index import GlobalPrefixIndex
from prfaas.cache.pool import CacheEvent
from prfaas.cluster.keys import NodeMeta
from prfaas.deploy.config import DeploymentConfig
from prfaas.worker.messages import Telemetry


@dataclass(slots=True)
class NodeRecord:
    name: str
    cluster: str
    role: str
    url: str = ""
    transfer_host: str = ""
    transfer_port: int = 0
    epoch: float = 0.0
    last_seen: float = 0.0
    alive: bool = False
    registered: bool = False  # its etcd lease lives (alive may still be False after a failure)
    context_tokens: int = 0  # the context limit its record states
    draining: bool = False
    beat: Telemetry | None = None
    # The router's own accounting of work it dispatched and that has not finished.
    prefill_inflight: int = 0
    prefill_tokens: int = 0
    decode_active: int = 0
    decode_pending: int = 0  # of decode_active: prefill (and so the KV transfer) not yet done
    max_batch: int = 1
    served: int = 0
    failures: int = 0
    converting: bool = False  # the router is draining it for a role change
    role_version: int = 0  # the worker's count of completed role changes
    # Where senders of each cluster reach this node's transfer port (a WAN relay, or direct).
    relays: dict[str, tuple[str, int]] = field(default_factory=dict)
    # Membership's set of changed node names: every assignment adds this node to it, so the
    # router's routing indexes re-read only the nodes that changed (router/fleet_view.py).
    changes: set[str] | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        try:
            changes = object.__getattribute__(self, "changes")
        except AttributeError:
            return  # still in __init__
        if changes is not None:
            changes.add(self.name)

    @property
    def usable(self) -> bool:
        return self.alive and not self.draining and not self.converting and bool(self.url)


@dataclass(slots=True)
class Membership:
    cfg: DeploymentConfig
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    index: GlobalPrefixIndex = field(default_factory=GlobalPrefixIndex)
    dead_after_s: float = 2.0
    on_dead: Callable[[str], None] | None = None  # the dispatcher breaks the node's streams
    changed: set[str] = field(default_factory=set)  # nodes whose record changed (see NodeRecord)
    # Nodes a routing index dropped for an old heartbeat: their next report must re-index them.
    timed_out: set[str] = field(default_factory=set)
    # Context limits the live nodes reported, and their minimum (None: recompute). Kept here so
    # the per-request check does not scan every node (it changes only when a node does).
    _contexts: dict[str, int] = field(default_factory=dict)
    replicas: int = 1  # router replicas serving these nodes (router/cluster_members.py sets it)
    _context_min: int | None = None

    def __post_init__(self) -> None:
        self.dead_after_s = self.cfg.router.dead_after_s
        for n in self.cfg.nodes:
            self.nodes[n.name] = NodeRecord(n.name, n.cluster, n.role, changes=self.changed)
            self.changed.add(n.name)

    def set_replicas(self, n: int) -> None:
        """How many router replicas share the nodes (queue counts then include the nodes'
        published ones: every node's routing entry changes)."""
        if n != self.replicas:
            self.replicas = n
            self.changed.update(self.nodes)

    def cluster_of(self, node: str) -> str:
        return self.nodes[node].cluster

    def register(self, meta: NodeMeta, now: float | None = None) -> NodeRecord:
        """A node's etcd record (put on join, rewritten on a role change)."""
        rec = self.nodes[meta.name]
        now = time.monotonic() if now is None else now
        if rec.epoch and meta.epoch != rec.epoch:
            self.forget_cache(rec.name)  # a restarted worker starts with an empty pool
            rec.role_version = 0  # ... and from the role etcd assigns it
        rec.epoch, rec.last_seen, rec.alive, rec.registered = meta.epoch, now, True, True
        # Only ports come from the record; hosts come from the deployment file.
        rec.url = self.url_of(rec.name, f"//{meta.advertise}")
        kv_port = urlsplit(f"//{meta.kv_advertise}").port or 0
        rec.transfer_host, rec.transfer_port = self.cfg.node(rec.name).advertise, kv_port
        if meta.role_version >= rec.role_version:  # else written before a newer role change
            if meta.role_version > rec.role_version:
                # Rewritten after a completed switch: its drain is over, whatever the last
                # telemetry (up to one period old) said; else the node is unroutable meanwhile.
                rec.draining = False
            rec.role, rec.role_version, rec.max_batch = meta.role, meta.role_version, meta.max_batch
        rec.context_tokens = meta.max_context_tokens
        self._note_context(rec.name, meta.max_context_tokens)
        self.index.needs_state = meta.needs_state
        return rec

    def telemetry(self, load: Telemetry, now: float | None = None) -> bool:
        """Apply a node's load report; False if it is from another process than the record's.
        A registered node marked dead after a failed call comes back with its telemetry."""
        rec = self.nodes.get(load.node)
        if rec is None or not rec.registered or load.epoch != rec.epoch:
            return False
        now = time.monotonic() if now is None else now
        if self._quiet(rec, load, now):
            # Nothing the routing indexes read changed: liveness moves on without marking the
            # node changed (router/fleet_view.py re-arms its expiry lazily), so the reports of a
            # fleet of idle nodes cost no re-indexing on the next decision's path.
            object.__setattr__(rec, "last_seen", now)
            object.__setattr__(rec, "beat", load)
            return True
        rec.last_seen = now
        rec.beat = load
        if load.role_version >= rec.role_version:
            rec.draining = load.draining
        if not rec.alive:
            rec.alive = True
            self._note_context(rec.name, rec.context_tokens)
        return True

    def _quiet(self, rec: NodeRecord, load: Telemetry, now: float) -> bool:
        """A report that changes nothing routing reads (router/live_view.py) from a node whose
        previous report is recent enough that no view can have timed it out meanwhile."""
        old = rec.beat
        return (
            old is not None
            and rec.alive
            and rec.name not in self.timed_out
            and 0 <= now - rec.last_seen < self.dead_after_s  # forward: expiry re-arms
            and (load.role_version < rec.role_version or load.draining == rec.draining)
            and (old.free_kv_bytes, old.queue_len, old.running, old.queued_tokens)
            == (load.free_kv_bytes, load.queue_len, load.running, load.queued_tokens)
        )

    def url_of(self, node: str, reported: str) -> str:
        """The node's control URL: its advertised host, the port it reported."""
        port = urlsplit(reported).port or 0
        scheme = "http" if self.cfg.security.insecure else "https"
        return f"{scheme}://{self.cfg.node(node).advertise}:{port}"

    def apply_pool_events(self, node: str, events: list[CacheEvent | None]) -> None:
        """A batch of the node's event stream, in order (None: AllBlocksCleared)."""
        for event in events:
            if event is None:
                self.index.drop_location(node)
            else:
                self.index.apply(node, event)

    def forget_cache(self, node: str) -> None:
        self.index.drop_location(node)

    def _note_context(self, node: str, tokens: int) -> None:
        if tokens <= 0:
            tokens = 0
        if self._contexts.get(node, 0) != tokens:
            if tokens:
                self._contexts[node] = tokens
            else:
                self._contexts.pop(node, None)
            self._context_min = None

    def context_limit(self, default: int) -> int:
        """The smallest context limit a live node reported, capped by `default`."""
        if self._context_min is None:
            self._context_min = min(self._contexts.values(), default=0)
        return min(default, self._context_min) if self._context_min else default

    def mark_dead(self, node: str) -> None:
        rec = self.nodes[node]
        if rec.alive:
            self._note_context(node, 0)
            rec.alive = False
            self.forget_cache(node)
            if self.on_dead is not None:
                self.on_dead(node)

    def expire(self, now: float | None = None) -> list[str]:
        """Mark nodes whose telemetry stopped as dead (their lease may live a little longer);
        returns their names."""
        now = time.monotonic() if now is None else now
        gone = [
            r.name for r in self.nodes.values() if r.alive and now - r.last_seen > self.dead_after_s
        ]
        for name in gone:
            self.mark_dead(name)
        return gone

    def alive(self, role: str | None = None, cluster: str | None = None) -> list[NodeRecord]:
        return [
            r
            for r in self.nodes.values()
            if r.usable
            and (role is None or r.role == role)
            and (cluster is None or r.cluster == cluster)
        ]

    def all_registered(self) -> bool:
        return all(r.alive for r in self.nodes.values())
