"""Who is alive and how loaded: heartbeat records, the router's own in-flight counts, cache events.

Heartbeats (every ~0.2 s) carry liveness, role, pool state, cache events and link counters. Queue
depths come from the router's own dispatch accounting instead: it is the only dispatcher, so its
counts are exact and current, while a heartbeat is up to one period old.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prfaas.cache.index import GlobalPrefixIndex
from prfaas.cache.pool import CacheEvent
from prfaas.deploy.config import DeploymentConfig
from prfaas.router.event_order import EventOrder
from prfaas.worker.messages import Heartbeat, WireEvent


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
    draining: bool = False
    beat: Heartbeat | None = None
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
    _seen: dict[str, EventOrder] = field(default_factory=dict)
    dead_after_s: float = 2.0
    on_dead: Callable[[str], None] | None = None  # the dispatcher breaks the node's streams
    changed: set[str] = field(default_factory=set)  # nodes whose record changed (see NodeRecord)
    # Context limits the live nodes reported, and their minimum (None: recompute). Kept here so
    # the per-request check does not scan every node (it changes only when a node does).
    _contexts: dict[str, int] = field(default_factory=dict)
    _context_min: int | None = None

    def __post_init__(self) -> None:
        self.dead_after_s = self.cfg.router.dead_after_s
        for n in self.cfg.nodes:
            self.nodes[n.name] = NodeRecord(n.name, n.cluster, n.role, changes=self.changed)
            self.changed.add(n.name)

    def cluster_of(self, node: str) -> str:
        return self.nodes[node].cluster

    def heartbeat(self, beat: Heartbeat, now: float | None = None) -> NodeRecord:
        rec = self.nodes.get(beat.node)
        if rec is None:
            raise KeyError(f"unknown node {beat.node!r} (not in the deployment file)")
        now = time.monotonic() if now is None else now
        if rec.epoch and beat.epoch != rec.epoch:
            self.forget_cache(rec.name)  # a restarted worker starts with an empty pool
            rec.role_version = 0  # ... and from its configured role
        rec.epoch, rec.last_seen, rec.alive = beat.epoch, now, True
        # Only ports come from the node (it may bind port 0); hosts come from the deployment file.
        rec.url = self.url_of(rec.name, beat.url)
        rec.transfer_host, rec.transfer_port = self.cfg.node(rec.name).advertise, beat.transfer_port
        if beat.role_version >= rec.role_version:  # else sent before a role change finished
            rec.role, rec.draining, rec.role_version = beat.role, beat.draining, beat.role_version
            rec.max_batch = beat.max_batch
        rec.beat = beat
        self._note_context(rec.name, beat.max_context_tokens)
        self.index.needs_state = beat.needs_state
        self.apply_events(rec.name, beat.events)
        return rec

    def url_of(self, node: str, reported: str) -> str:
        """The node's control URL: its advertised host, the port it reported."""
        port = urlsplit(reported).port or 0
        scheme = "http" if self.cfg.security.insecure else "https"
        return f"{scheme}://{self.cfg.node(node).advertise}:{port}"

    def apply_events(self, node: str, events: list[WireEvent]) -> None:
        """Apply in per-block sequence order: a late (stale) event never undoes a newer one."""
        seen = self._seen.setdefault(node, EventOrder())
        for seq, kind, block_hash, has_state in events:
            if not seen.fresh(seq, block_hash, kind == "s"):
                continue
            stored = "stored" if kind == "s" else "evicted"
            self.index.apply(node, CacheEvent(stored, block_hash, has_state))  # type: ignore[arg-type]

    def forget_cache(self, node: str) -> None:
        self.index.drop_location(node)
        self._seen.pop(node, None)

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
        """Mark nodes whose heartbeats stopped as dead; returns their names."""
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
