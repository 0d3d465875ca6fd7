"""A router replica's view of the cluster: node records from etcd, each node's event stream, the
replicas' shared policy and role assignments, and the rebalancer's leader election."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from prfaas.cache.events import EventDecodeError
from prfaas.cluster.client import connect
from prfaas.cluster.keys import (
    NodeMeta,
    RouterMeta,
    decode_router,
    role_key,
    roles_prefix,
    router_key,
    routers_prefix,
)
from prfaas.cluster.kv_events import KvEventSubscriber
from prfaas.cluster.leader import LeaderElection
from prfaas.cluster.pool_events import from_vllm
from prfaas.cluster.registry import Registration
from prfaas.cluster.watch import NodeWatch
from prfaas.router.cluster_policy import PolicySync
from prfaas.router.transfer_setup import ensure_relays
from prfaas.security.tls import Pki
from prfaas.worker.messages import Telemetry

log = logging.getLogger(__name__)
_LOAD = msgspec.msgpack.Decoder(Telemetry)
MAX_STREAMS = 16384  # nodes a replica can follow (ZMQ's default socket cap would stop at ~500)


class RouterCluster:
    """`start()` joins etcd and follows it; `close()` leaves. `replicas` counts live routers."""

    def __init__(self, backend: Any, etcd_url: str, pki: Pki | None, name: str = "") -> None:
        self.backend, self.members = backend, backend.members
        self.cfg = backend.cfg
        self.etcd_url, self.pki = etcd_url, pki
        self.name = name or f"router-{socket.gethostname()}-{os.getpid()}"
        self.deployment = self.cfg.name
        self.ctx = zmq.asyncio.Context()
        self.ctx.set(zmq.MAX_SOCKETS, MAX_STREAMS * 2)  # one SUB and one replay socket per node
        self.curve: tuple[bytes, bytes] | None = zmq.curve_keypair() if pki is not None else None
        self.subs: dict[str, KvEventSubscriber] = {}
        self.metas: dict[str, NodeMeta] = {}  # the latest record of each registered node
        self.streams: dict[str, tuple[str, float]] = {}  # (endpoint, epoch) subscribed to
        self.heard: dict[str, float] = {}  # when each node's stream last delivered anything
        self.loaded: set[str] = set()  # nodes whose telemetry this replica has applied
        self.assigned: dict[str, str] = {}  # node -> role written to roles/ (by any replica)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.client: Any = None
        self.ignored = 0  # records of nodes the deployment file does not name

    async def start(self) -> None:
        ttl = self.cfg.router.lease_s
        self.client = await connect(self.etcd_url, self.pki)
        me = RouterMeta(self.name, self.curve[0].decode() if self.curve else "")
        self.reg = Registration(self.client, self.deployment, me, ttl,
                                key=router_key(self.deployment, self.name))
        await self.reg.start()  # before subscribing: the nodes' ZAP handlers admit this key
        self.routers = NodeWatch(self.client, self.deployment, routers_prefix(self.deployment),
                                 decode_router)
        self.routers.listeners.append(self._replicas)
        self.roles = NodeWatch(self.client, self.deployment, roles_prefix(self.deployment),
                               bytes.decode)
        self.roles.listeners.append(self._assigned)
        self.nodes = NodeWatch(self.client, self.deployment)
        self.nodes.listeners.append(self._node)
        for w in (self.routers, self.roles, self.nodes):
            await w.start()  # the snapshot reaches the listeners too
        self._replicas("", None)
        self.leader = LeaderElection(self.client, self.deployment, "rebalancer", self.name, ttl)
        await self.leader.start()
        self.policy = PolicySync(self.client, self.deployment, self.backend)
        await self.policy.start()
        self._spawn(self._watchdog())

    async def settled(self, timeout_s: float) -> float:
        """Wait (at most `timeout_s`) until every node registered in etcd has sent this replica
        its telemetry, and return how long that took. A replica that served before would
        refuse its first requests with 'no prefill node accepts work' (503): its nodes join
        asynchronously, and the first telemetry can lag a CURVE handshake retry."""
        t0 = time.monotonic()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while any(n in self.members.nodes and n not in self.loaded
                          for n in self.nodes.nodes):
                    await asyncio.sleep(0.02)
        return time.monotonic() - t0

    @property
    def replicas(self) -> int:
        return max(len(self.routers.nodes), 1)

    def _replicas(self, _name: str, _meta: Any) -> None:
        self.members.set_replicas(self.replicas)

    @property
    def is_leader(self) -> bool:
        return bool(self.leader.is_leader)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def summary(self) -> dict[str, Any]:
        """For /internal/state: this replica, the leader, and its event streams' health."""
        subs = self.subs.values()
        return {
            "name": self.name, "leader": self.leader.leader, "is_leader": self.is_leader,
            "replicas": sorted(self.routers.nodes), "policy_records_applied": self.policy.applied,
            "replayed": sum(s.replayed for s in subs), "lost": sum(s.lost for s in subs),
        }  # fmt: skip

    # -- nodes -----------------------------------------------------------------------------
    def _node(self, name: str, meta: NodeMeta | None) -> None:
        if name not in self.members.nodes:
            self.ignored += 1
            return
        if meta is None:  # the lease expired or was revoked: gone from this router at once
            self.metas.pop(name, None)
            self._unsubscribe(name)
            self.members.nodes[name].registered = False
            self.members.mark_dead(name)
            log.warning("node %s left the cluster (lease gone)", name)
            return
        self._spawn(self._join(name, meta))

    async def _join(self, name: str, meta: NodeMeta) -> None:
        self.metas[name] = meta
        try:
            await ensure_relays(self.backend, name, meta)
        except Exception as exc:  # the WAN emulator is not reachable (yet): retried shortly
            log.warning("relays for %s: %s", name, exc)
            await asyncio.sleep(0.5)
            if self.metas.get(name) is meta:
                self._spawn(self._join(name, meta))
            return
        if self.metas.get(name) is not meta:
            return  # deleted or rewritten meanwhile: the newer event decides
        if self.streams.get(name) != (meta.events, meta.epoch):  # a new process: a new stream
            self._unsubscribe(name)
            self._subscribe(name, meta)
        self.members.register(meta)
        if self.assigned.get(name) == meta.role:
            self.members.nodes[name].converting = False

    async def _watchdog(self) -> None:
        """Re-open a stream that has been silent for a while although its node is registered.
        Telemetry arrives every heartbeat_s, so silence means a lost connection, e.g. a CURVE
        handshake the node refused because its watch had not yet seen this replica's key
        (ZMQ does not retry a refused handshake)."""
        stale_s = max(2.0, 5 * self.cfg.router.heartbeat_s)
        # A stream never heard yet is retried sooner: a replica that just started waits for its
        # nodes' first telemetry before it serves (settled), and the refused handshake is the
        # usual cause of that wait.
        fresh_s = max(0.5, 3 * self.cfg.router.heartbeat_s)
        while True:
            await asyncio.sleep(fresh_s / 2)
            now = time.monotonic()
            for name, sub in list(self.subs.items()):
                meta = self.metas.get(name)
                limit = stale_s if name in self.loaded else fresh_s
                if meta is not None and now - self.heard.get(name, now) > limit:
                    log.info("stream of %s silent for %.1f s: reconnecting", name, limit)
                    self._unsubscribe(name)
                    self._subscribe(name, meta, sub.next_seq)

    def _subscribe(self, name: str, meta: NodeMeta, start_seq: int = 0) -> None:
        self.heard[name] = time.monotonic()
        curve = None
        if self.curve is not None and meta.curve_key:
            curve = (meta.curve_key.encode(), self.curve[0], self.curve[1])

        def on_batch(_seq: int, payload: bytes) -> None:
            self.heard[name] = time.monotonic()
            try:
                self.members.apply_pool_events(name, from_vllm(payload))
            except EventDecodeError as exc:
                log.warning("bad KV event batch from %s: %s", name, exc)

        load = (f"load@{name}".encode(), lambda p: self._load(name, p))
        sub = KvEventSubscriber(self.ctx, meta.events, meta.replay, on_batch,
                                topic=f"kv@{name}", start_seq=start_seq, other=load, curve=curve)
        sub.start()
        self.subs[name] = sub
        self.streams[name] = (meta.events, meta.epoch)

    def _unsubscribe(self, name: str) -> None:
        sub = self.subs.pop(name, None)
        self.streams.pop(name, None)
        if sub is not None:
            self._spawn(sub.close())

    def _load(self, name: str, payload: bytes) -> None:
        self.heard[name] = time.monotonic()
        try:
            load = _LOAD.decode(payload)
        except msgspec.DecodeError:
            return
        rec = self.members.nodes[name]
        revived = rec.registered and not rec.alive
        if not self.members.telemetry(load):
            return
        self.loaded.add(name)
        self.backend.bandwidth.report(name, rec.cluster, load.links)
        sub = self.subs.get(name)
        if sub is None:
            return
        if revived:  # marked dead after a failure, yet alive: its pool is still there
            self._spawn(sub.replay_all())
        elif load.events_seq > sub.next_seq:
            self._spawn(sub.catch_up(load.events_seq))

    # -- roles -----------------------------------------------------------------------------
    def _assigned(self, name: str, role: str | None) -> None:
        rec = self.members.nodes.get(name)
        if role is None or rec is None:
            self.assigned.pop(name, None)
            return
        self.assigned[name] = role
        if rec.role != role and rec.alive:
            rec.converting = True  # draining: this replica routes nothing new to it

    async def assign_role(self, node: str, role: str, timeout_s: float) -> None:
        """Write the node's new role to etcd; return once its record shows the switch (it
        drains first: what it admitted finishes)."""
        rec = self.members.nodes[node]
        if self.cfg.cluster(rec.cluster).role == "prfaas" and role != "prefill":
            raise ValueError("PrfaaS nodes are prefill-only")
        rec.converting = True
        try:
            await self.client.put(role_key(self.deployment, node), role.encode())
            async with asyncio.timeout(timeout_s):
                while rec.role != role:
                    await asyncio.sleep(0.02)
        finally:
            rec.converting = False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.leader.resign()
            await self.policy.close()
        for name in list(self.subs):
            self._unsubscribe(name)
        for t in list(self.tasks):
            with contextlib.suppress(BaseException):
                await t
        for w in (self.nodes, self.roles, self.routers):
            await w.close()
        await self.reg.close()
        self.ctx.destroy(linger=0)
