"""One worker instance: prefill queue, continuous-batching decode, prefix pool, KV link, roles."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import httpx
import msgspec

from prfaas.cache.pool import CacheEvent
from prfaas.errors import ConfigError
from prfaas.worker.decoding import DecodeService
from prfaas.worker.engines import WorkerEngine
from prfaas.worker.errors import WorkerError
from prfaas.worker.faults import FaultDisabled, Faults
from prfaas.worker.held import fetch_held
from prfaas.worker.kvlink import KvLink, Layer
from prfaas.worker.messages import (
    DecodeJob,
    FaultSpec,
    LinkStats,
    PrefillJob,
    PrefillReply,
    PushJob,
    PushReply,
    Target,
    Telemetry,
    TokenLine,
)
from prfaas.worker.pulls import PULL_TIMEOUT_S, pull_prefix, serve_push

if TYPE_CHECKING:
    from prfaas.deploy.config import DeploymentConfig, NodeConfig

log = logging.getLogger(__name__)


class WorkerNode:
    def __init__(
        self,
        cfg: DeploymentConfig,
        node: NodeConfig,
        engine: WorkerEngine,
        kv: KvLink,
        *,
        fault_hooks: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.cfg, self.node, self.engine, self.kv = cfg, node, engine, kv
        self.name, self.cluster = node.name, node.cluster
        self.role, self.draining = node.role, False
        self.role_version = 0  # bumped by every role change; its etcd record carries it
        self.epoch = time.time()
        self.url = ""
        self._events: list[CacheEvent] = []
        self.on_events: Callable[[], None] | None = None  # wakes the event publisher
        self.pool = engine.make_pool(node.pool_bytes, self._on_event)
        self._prefill_lock = asyncio.Lock()
        self.prefill_waiting = 0
        self.prefill_running = 0
        self.prefill_tokens = 0
        self.max_batch = node.max_batch or engine.default_max_batch
        self.faults = Faults(fault_hooks)
        self.decoding = DecodeService(
            engine, kv, node.name, self.max_batch, self.faults.point, self._check_idle,
            lambda job: fetch_held(self, job),
        )
        self.links: dict[str, LinkStats] = {}
        self._peers: dict[str, set[tuple[str, int]]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.peers: dict[str, str] = {}  # node -> control URL, from the nodes' etcd records
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(PULL_TIMEOUT_S, connect=5.0),
            verify=tls if tls is not None else True,
        )

    # -- cache events ----------------------------------------------------------------------
    def _on_event(self, event: CacheEvent) -> None:
        # Pools may change on an engine's compute thread: the hook must be thread-safe.
        self._events.append(event)
        if self.on_events is not None:
            self.on_events()

    def take_events(self) -> list[CacheEvent]:
        events, self._events = self._events, []
        return events

    # -- links ---------------------------------------------------------------------------
    def _connections(self, dst_cluster: str) -> int:
        link = self.cfg.link(self.cluster, dst_cluster) if dst_cluster != self.cluster else None
        return link.connections if link is not None else 1

    async def _send(
        self, target: Target, key: str, layers: AsyncIterator[Layer]
    ) -> tuple[int, float]:
        """Ship layers to `target` (the receiver itself, or the WAN relay in front of it)."""
        self._check_target(target)
        dst_cluster = self.cfg.node(target.node).cluster
        stats = self.links.setdefault(dst_cluster, LinkStats())
        self._peers.setdefault(dst_cluster, set()).add((target.host, target.port))
        t0 = time.monotonic()
        sent = await self.kv.send(
            target.host,
            target.port,
            key,
            layers,
            stats,
            self._connections(dst_cluster),
            tls_peer=target.node if self._kv_tls(dst_cluster) else None,
        )
        return sent, time.monotonic() - t0

    def _check_target(self, target: Target) -> None:
        """KV goes only to a node of the deployment, at its advertised host or at a relay on the
        WAN emulator's host: never to an arbitrary address from a job."""
        try:
            node = self.cfg.node(target.node)
        except ConfigError:
            raise WorkerError(f"unknown target node {target.node!r}") from None
        router = self.cfg.router
        hosts = {node.advertise, router.control_host, router.advertise}
        if target.host not in hosts:
            raise WorkerError(f"target host for {target.node!r} is not where that node lives")

    def _kv_tls(self, dst_cluster: str) -> bool:
        """KV crosses datacenters encrypted by default; inside one, only with kv_tls = "all"."""
        sec = self.cfg.security
        if sec.insecure or sec.kv_tls == "off":
            return False
        return sec.kv_tls == "all" or dst_cluster != self.cluster

    # -- prefill ---------------------------------------------------------------------------
    def _check_role(self, role: str) -> None:
        if self.role != role:
            raise WorkerError(f"node {self.name} is a {self.role} node, not {role}")
        if self.draining:
            raise WorkerError(f"node {self.name} is draining (changing role)")

    async def prefill(self, job: PrefillJob) -> PrefillReply:
        self._check_role("prefill")
        self._check_target(job.target)
        t_arrive = time.monotonic()
        self.prefill_tokens += len(job.token_ids)
        self._idle.clear()
        try:
            self.prefill_waiting += 1
            try:
                await self._prefill_lock.acquire()  # one prefill at a time: an instance
            finally:
                self.prefill_waiting -= 1
            self.prefill_running += 1
            released = False

            def release() -> None:  # once: when compute ends, or on the way out
                nonlocal released
                if not released:
                    released = True
                    self._prefill_lock.release()

            try:
                return await self._run_prefill(job, t_arrive, release)
            finally:
                self.prefill_running -= 1
                release()
        finally:
            self.prefill_tokens -= len(job.token_ids)
            self._check_idle()

    async def _run_prefill(
        self, job: PrefillJob, t_arrive: float, release: Callable[[], None]
    ) -> PrefillReply:
        queue_s = time.monotonic() - t_arrive
        self.faults.point("die_in_prefill")
        if self.faults.take("fail_transfer"):
            self.kv.fail_next_sends += 1
        pulled = await pull_prefix(self, job) if job.pull is not None else 0
        ready = t_arrive if job.pull is None else time.monotonic()  # a pulled job waited for it
        queue: asyncio.Queue[Layer | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def emit(layer: Layer) -> None:
            # Engines may call this from their compute thread.
            loop.call_soon_threadsafe(queue.put_nowait, layer)

        async def layers() -> AsyncIterator[Layer]:
            sent = 0
            while (item := await queue.get()) is not None:
                yield item
                sent += 1
                if sent == 2:
                    self.faults.point("die_mid_prefill")  # after part of the KV went out

        send = asyncio.create_task(self._send(job.target, job.request_id, layers()))
        try:
            stats = await self.engine.prefill(job, self.pool, emit, ready)
        except BaseException:
            send.cancel()
            raise
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        release()  # the next prefill may compute while this KV's last layers are on the wire
        sent, transfer_s = await send
        return PrefillReply(
            first_token=stats.first_token,
            reused_tokens=stats.reused_tokens,
            pulled_tokens=pulled,
            queue_s=queue_s,
            compute_s=stats.compute_s,
            transfer_s=transfer_s,
            bytes_sent=sent,
        )

    async def push(self, job: PushJob) -> PushReply:
        """Serve a cache pull: send the leading blocks of `hashes` to the requesting node."""
        return await serve_push(self, job)

    # -- decode ----------------------------------------------------------------------------
    def decode(self, job: DecodeJob) -> AsyncIterator[TokenLine]:
        """Wait for the request's KV, join the continuous batch, stream its tokens."""
        self._check_role("decode")
        self._idle.clear()
        return self.decoding.stream(job)

    # -- roles -----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.prefill_waiting or self.prefill_running or self.decoding.busy)

    def _check_idle(self) -> None:
        if not self.busy:
            self._idle.set()

    async def change_role(self, role: str) -> None:
        """Drain (finish every admitted request, take no new one), then switch roles."""
        if role not in ("prefill", "decode"):
            raise WorkerError(f"unknown role {role!r}")
        if self.cfg.cluster(self.cluster).role == "prfaas" and role != "prefill":
            raise WorkerError("PrfaaS nodes are prefill-only")
        if role == self.role:
            return
        self.draining = True
        try:
            self._check_idle()
            await self._idle.wait()
            if role == "decode":
                self.decoding.ready()
            self.role = role
        finally:
            self.draining = False
            self.role_version += 1

    # -- faults ----------------------------------------------------------------------------
    def arm_fault(self, spec: FaultSpec) -> None:
        try:
            self.faults.arm(spec)
        except FaultDisabled as exc:
            raise WorkerError(str(exc)) from None

    # -- telemetry -------------------------------------------------------------------------
    def telemetry(self) -> Telemetry:
        stats = self.pool.stats()
        decoding = self.decoding.active
        return Telemetry(
            node=self.name,
            epoch=self.epoch,
            role=self.role,
            draining=self.draining,
            role_version=self.role_version,
            queue_len=self.prefill_waiting + self.decoding.waiting,
            queued_tokens=self.prefill_tokens,
            running=self.prefill_running + decoding,
            max_batch=self.max_batch if self.role == "decode" else 1,
            free_kv_bytes=self.pool.free_bytes,
            pool_used_bytes=self.pool.used_bytes,
            pool_hit_tokens=stats.hit_tokens,
            pool_query_tokens=stats.query_tokens,
            links={k: self._link_stats(k, v) for k, v in self.links.items()},
        )

    def _link_stats(self, dst_cluster: str, stats: LinkStats) -> LinkStats:
        """The cumulative counters toward `dst_cluster`, bytes as acknowledged by now."""
        peers = self._peers.get(dst_cluster, set())
        return msgspec.structs.replace(
            stats,
            bytes_sent=self.kv.delivered_bytes(peers),
            in_flight_bytes=self.kv.in_flight_bytes(peers),
        )

    async def close(self) -> None:
        await self.decoding.close()
        await self.http.aclose()
        await self.kv.close()
