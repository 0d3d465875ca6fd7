"""A worker's part in the cluster: its leased etcd record, its role watch, its peers, and its
ZMQ stream of KV events (vLLM format, topic `kv@NODE`) and telemetry (topic `load@NODE`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

import msgspec
import zmq
import zmq.asyncio

from prfaas.cluster.client import connect
from prfaas.cluster.keys import (
    NodeMeta,
    decode_router,
    role_key,
    routers_prefix,
)
from prfaas.cluster.kv_events import KvEventPublisher
from prfaas.cluster.pool_events import CLEARED, to_vllm
from prfaas.cluster.registry import Registration
from prfaas.cluster.watch import NodeWatch
from prfaas.deploy.config import DeploymentConfig
from prfaas.security.tls import Pki
from prfaas.worker.errors import WorkerError
from prfaas.worker.node import WorkerNode

log = logging.getLogger(__name__)
MAX_ZMQ_SOCKETS = 16384
ETCD_TIMEOUT_S = 15.0  # per etcd call: a host starting many nodes at once is slow to answer
_MSGPACK = msgspec.msgpack.Encoder()


def peer_url(cfg: DeploymentConfig, name: str, meta: NodeMeta) -> str | None:
    """A node's control URL: the host its deployment-file entry advertises, the port its record
    names (a record can never redirect a peer to another host)."""
    try:
        host = cfg.node(name).advertise
        port = urlsplit(f"//{meta.advertise}").port
    except (ValueError, Exception):
        return None
    scheme = "http" if cfg.security.insecure else "https"
    return f"{scheme}://{host}:{port}" if port else None


class RouterKeys:
    """ZAP credentials provider: admits the CURVE keys the router replicas registered in etcd."""

    def __init__(self, routers: NodeWatch) -> None:
        self.routers = routers

    def callback(self, _domain: str, key: bytes) -> bool:
        return any(r.curve_key.encode() == key for r in self.routers.nodes.values())


class ProcessZmq:
    """One ZMQ context per process and its one ZAP handler (a context admits only one), shared
    by every node the process runs (`prfaas worker --node A --node B ...`)."""

    def __init__(self) -> None:
        self.ctx = zmq.asyncio.Context()
        self.ctx.set(zmq.MAX_SOCKETS, MAX_ZMQ_SOCKETS)  # two sockets per node, many nodes
        self.auth: Any = None
        self.routers: NodeWatch | None = None
        self._lock = asyncio.Lock()

    async def authenticate(self, client: Any, deployment: str) -> None:
        """Start the ZAP handler once: it admits the CURVE keys router replicas put in etcd."""
        async with self._lock:
            if self.auth is not None:
                return
            from zmq.auth.asyncio import AsyncioAuthenticator

            self.routers = NodeWatch(client, deployment, routers_prefix(deployment),
                                     decode_router)
            await self.routers.start()
            self.auth = AsyncioAuthenticator(self.ctx)
            self.auth.start()
            self.auth.configure_curve_callback("*", RouterKeys(self.routers))

    async def close(self) -> None:
        if self.routers is not None:
            with contextlib.suppress(BaseException):
                await self.routers.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.destroy(linger=0)


class WorkerCluster:
    """`start()` publishes the stream, registers, and follows roles and peers; `close()` leaves.
    `shared`: the process's ZMQ context when it runs several nodes (else this node's own)."""

    def __init__(self, worker: WorkerNode, etcd_url: str, pki: Pki | None,
                 shared: ProcessZmq | None = None) -> None:
        self.worker, self.cfg = worker, worker.cfg
        self.etcd_url, self.pki = etcd_url, pki
        self.deployment = self.cfg.name
        self.zmq = shared if shared is not None else ProcessZmq()
        self._owns_zmq = shared is None
        self.ctx = self.zmq.ctx
        self.client: Any = None
        self.reg: Registration | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.watches: list[NodeWatch] = []
        self.curve_public = ""
        self._wake = asyncio.Event()

    async def start(self) -> None:
        self.client = await connect(self.etcd_url, self.pki, ETCD_TIMEOUT_S)
        self.pub = await self._publisher()
        peers = NodeWatch(self.client, self.deployment)
        peers.listeners.append(self._peer)
        await peers.start()
        self.watches.append(peers)
        await self._adopt_role()
        self.reg = Registration(self.client, self.deployment, self.meta(), self.cfg.router.lease_s)
        await self.reg.start()
        loop = asyncio.get_running_loop()
        wake = self._wake

        def on_events() -> None:
            loop.call_soon_threadsafe(wake.set)

        self.worker.on_events = on_events
        self._wake.set()
        for coro in (self._flush(), self._telemetry(), self._follow_role()):
            self.tasks.append(asyncio.create_task(coro))

    async def _publisher(self) -> KvEventPublisher:
        host = self.worker.node.host
        secret = None
        if self.pki is not None:
            await self.zmq.authenticate(self.client, self.deployment)
            public, secret = zmq.curve_keypair()
            self.curve_public = public.decode()
        pub = KvEventPublisher(self.ctx, f"tcp://{host}:0", f"tcp://{host}:0",
                               topic=f"kv@{self.worker.name}", curve_secret=secret)
        pub.start()
        await pub.publish(CLEARED)  # seq 0: a consumer drops whatever an older process held
        return pub

    def _advertised(self, endpoint: str) -> str:
        port = urlsplit(endpoint.replace("tcp://", "//")).port
        return f"tcp://{self.worker.node.advertise}:{port}"

    def meta(self) -> NodeMeta:
        w = self.worker
        url = urlsplit(w.url)
        return NodeMeta(
            name=w.name, cluster=w.cluster, role=w.role,  # type: ignore[arg-type]
            advertise=f"{w.node.advertise}:{url.port}",
            kv_advertise=f"{w.node.advertise}:{w.kv.port}",
            max_batch=w.max_batch if w.role == "decode" else 1,
            pool_bytes=w.node.pool_bytes, engine=self.cfg.engine.kind, model=self.cfg.engine.model,
            role_version=w.role_version, epoch=w.epoch,
            events=self._advertised(self.pub.endpoint),
            replay=self._advertised(self.pub.replay_endpoint),
            curve_key=self.curve_public,
            max_context_tokens=w.engine.max_context_tokens,
            needs_state=w.engine.state_bytes > 0,
        )  # fmt: skip

    def _peer(self, name: str, meta: NodeMeta | None) -> None:
        url = peer_url(self.cfg, name, meta) if meta is not None else None
        if url is None or name == self.worker.name:
            self.worker.peers.pop(name, None)
        else:
            self.worker.peers[name] = url

    async def _adopt_role(self, register: bool = False) -> None:
        """Take the role the cluster last assigned (a (re)started node: before registering);
        remember the revision to watch from."""
        key = role_key(self.deployment, self.worker.name)
        got = await self.client.get_prefix(key)
        self._role_rev = got.header.revision
        for kv in got:
            if kv.key == key:
                await self._switch(kv.value.decode(), register)

    async def _switch(self, role: str, register: bool = True) -> None:
        if role == self.worker.role:
            return
        try:
            await self.worker.change_role(role)  # drains first
        except WorkerError as exc:
            log.warning("role %r assigned in etcd refused: %s", role, exc)
            return
        if register and self.reg is not None:
            await self.reg.update(self.meta())  # the one write a role change costs

    async def _follow_role(self) -> None:
        key = role_key(self.deployment, self.worker.name)
        while True:
            try:
                watch = await self.client.watch(key, start_revision=self._role_rev + 1)
                async for event in watch:
                    self._role_rev = event.kv.mod_revision
                    if event.kind == "PUT":
                        await self._switch(event.kv.value.decode())
            except Exception:  # etcd restarted or unreachable: read the key again, re-watch
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await self._adopt_role(register=True)

    async def _flush(self) -> None:
        block = self.worker.engine.block_tokens
        while True:
            await self._wake.wait()
            self._wake.clear()
            events = self.worker.take_events()
            if events:
                await self.pub.publish(to_vllm(events, block))

    async def _telemetry(self) -> None:
        topic = f"load@{self.worker.name}".encode()
        while True:
            load = msgspec.structs.replace(self.worker.telemetry(), events_seq=self.pub.next_seq)
            await self.pub.send_other(topic, _MSGPACK.encode(load))
            await asyncio.sleep(self.cfg.router.heartbeat_s)

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.reg is not None:
            await self.reg.close()  # revoking the lease removes the node at once
        for w in self.watches:
            await w.close()
        await self.pub.close()
        if self._owns_zmq:
            await self.zmq.close()
