"""The worker's KV channel on prfaas.transfer: one TransferServer in, pooled TransferClients out.

A transfer is the data layers (streamed as the engine produces them) plus a last JSON layer of
metadata (the first token, the block count of a cache pull, ...). Transfers are keyed by a string;
a receiver `expect`s a key, and transfers that arrive before anyone expects them are kept for a
while (the router starts decode and prefill concurrently, so either may come first). Shaping is
not done here: cross-cluster targets are the WAN emulator's relay ports (see worker/wan.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prfaas.security.tls import Pki
from prfaas.transfer.errors import TransferError
from prfaas.transfer.tcp import LayerPayload, ReceivedTransfer, TransferClient, TransferServer
from prfaas.worker.messages import LinkStats

UNCLAIMED_TTL_S = 120.0
CHUNK_BYTES = 1 << 20

Buffer = bytes | bytearray | memoryview
_Peer = tuple[str, int, str | None]  # host, port, the TLS name the receiver must prove
Layer = tuple[dict[str, Any], Sequence[Buffer]]  # (meta, buffers); meta {} for a data layer


class TransferFailed(Exception):
    """A transfer could not be completed (peer gone, rejected, or an injected fault)."""


@dataclass(slots=True)
class Inbound:
    meta: dict[str, Any]  # the trailer
    layers: list[memoryview]  # data layers in order
    nbytes: int  # data bytes
    prefix: list[memoryview] | None = None  # a held prefix's KV, joined by the decode node


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Inbound] | None = None
    arrived: Inbound | None = None
    deadline: float = field(default_factory=lambda: time.monotonic() + UNCLAIMED_TTL_S)


class KvLink:
    """`tls`: this node's Pki (None: plain only, HMAC-authenticated); `require_tls`: refuse
    plain inbound connections (kv_tls = "all")."""

    def __init__(
        self,
        secret: bytes,
        host: str = "127.0.0.1",
        tls: Pki | None = None,
        require_tls: bool = False,
    ) -> None:
        self.secret = secret
        self.host = host
        self.tls, self.require_tls = tls, require_tls
        self.port = 0
        self._server: TransferServer | None = None
        self._pending: dict[str, _Pending] = {}
        self._clients: dict[_Peer, TransferClient] = {}
        self._connecting: dict[_Peer, asyncio.Lock] = {}
        self._retired: dict[tuple[str, int], int] = {}  # delivered bytes of replaced clients
        self.fail_next_sends = 0  # fault hook: the next N sends break after their first layer

    async def start(self, port: int = 0) -> int:
        self._server = TransferServer(
            self.host,
            port,
            self.secret,
            self._on_complete,
            tls=self.tls.server if self.tls is not None else None,
            allow_plain=not self.require_tls,
        )
        await self._server.start()
        self.port = int(self._server.port)
        return self.port

    async def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.close()
        if self._server is not None:
            await self._server.close()
        for p in self._pending.values():
            if p.future is not None and not p.future.done():
                p.future.cancel()

    # -- receiving -------------------------------------------------------------------------
    def expect(self, key: str) -> asyncio.Future[Inbound]:
        """A future for the transfer `key` (already arrived, or arriving later)."""
        self._gc()
        fut: asyncio.Future[Inbound] = asyncio.get_running_loop().create_future()
        pending = self._pending.setdefault(key, _Pending())
        if pending.arrived is not None:
            fut.set_result(pending.arrived)
            del self._pending[key]
        else:
            pending.future = fut
        return fut

    def forget(self, key: str) -> None:
        self._pending.pop(key, None)

    def _on_complete(self, t: ReceivedTransfer) -> None:
        if not t.layers:
            return
        try:
            meta = json.loads(bytes(t.layers[-1]))
        except ValueError:
            return  # not ours: every transfer ends with a JSON trailer
        data = list(t.layers[:-1])
        self._deliver(t.transfer_id, Inbound(meta, data, sum(len(v) for v in data)))

    def _deliver(self, key: str, inbound: Inbound) -> None:
        pending = self._pending.get(key)
        if pending is not None and pending.future is not None:
            if not pending.future.done():
                pending.future.set_result(inbound)
            del self._pending[key]
        elif pending is None:
            self._pending[key] = _Pending(arrived=inbound)
        # else: a duplicate (a retried attempt after the first one landed): keep the first

    def _gc(self) -> None:
        now = time.monotonic()
        for key in [k for k, p in self._pending.items() if p.future is None and p.deadline < now]:
            del self._pending[key]

    # -- sending ---------------------------------------------------------------------------
    async def _client(
        self, host: str, port: int, connections: int, peer: str | None
    ) -> TransferClient:
        key = (host, port, peer)
        lock = self._connecting.setdefault(key, asyncio.Lock())
        async with lock:
            client = self._clients.get(key)
            if client is None or not client.live_connections:
                if client is not None:
                    self._retire(key, client)
                    await client.close()
                client = TransferClient(
                    host,
                    port,
                    self.secret,
                    connections=connections,
                    chunk_bytes=CHUNK_BYTES,
                    stall_timeout_s=10.0,
                    max_reconnects=2,
                    tls=self.tls.client if peer is not None and self.tls is not None else None,
                    server_name=peer,
                )
                try:
                    await client.connect()
                except (OSError, TransferError) as exc:
                    raise TransferFailed(
                        f"cannot reach transfer endpoint {host}:{port}: {exc}"
                    ) from None
                self._clients[key] = client
            return client

    def _retire(self, key: _Peer, client: TransferClient) -> None:
        """Keep what a client being replaced delivered in the totals."""
        self._retired[key[:2]] = self._retired.get(key[:2], 0) + client.monitor.delivered_bytes
        self._clients.pop(key, None)

    def in_flight_bytes(self, peers: set[tuple[str, int]]) -> int:
        """Bytes accepted for `peers` and not yet acknowledged: on the wire or waiting for a
        connection (transfer-client telemetry)."""
        total = 0
        for k, c in self._clients.items():
            if k[:2] in peers:
                tel = c.telemetry()
                total += tel.in_flight_bytes + tel.queued_bytes
        return total

    def delivered_bytes(self, peers: set[tuple[str, int]]) -> int:
        """Bytes `peers` acknowledged since this link started, as they arrive (not per finished
        transfer: a transfer of several seconds then shows as a steady rate, not one lump)."""
        gone = sum(n for k, n in self._retired.items() if k in peers)
        return gone + sum(
            c.monitor.delivered_bytes for k, c in self._clients.items() if k[:2] in peers
        )

    async def send(
        self,
        host: str,
        port: int,
        key: str,
        layers: AsyncIterator[Layer],
        stats: LinkStats | None = None,
        connections: int = 1,
        tls_peer: str | None = None,
    ) -> int:
        """Send every layer as it is produced; returns data bytes once the peer verified all.
        `tls_peer`: encrypt, and the receiver must prove this node name."""
        stats = stats or LinkStats()
        t0 = time.monotonic()
        if tls_peer is not None and self.tls is None:
            raise TransferFailed("TLS requested but this node has no certificate")
        client = await self._client(host, port, connections, tls_peer)
        sent = 0

        async def payloads() -> AsyncIterator[LayerPayload]:
            nonlocal sent
            index = 0
            async for meta, buffers in layers:
                if meta:  # the trailer: metadata, always last
                    yield LayerPayload(index, json.dumps(meta).encode())
                    return
                data = buffers[0] if len(buffers) == 1 else b"".join(buffers)
                yield LayerPayload(index, data)
                sent += memoryview(data).nbytes
                index += 1
                if self.fail_next_sends > 0:
                    self.fail_next_sends -= 1
                    raise TransferFailed("injected transfer fault")

        try:
            await client.send(key, payloads())
        except (TransferError, OSError, TransferFailed) as exc:
            stats.failures += 1
            if self._clients.get((host, port, tls_peer)) is client:
                self._retire((host, port, tls_peer), client)
            with contextlib.suppress(Exception):
                await client.close()
            raise TransferFailed(f"transfer {key} to {host}:{port} failed: {exc}") from None
        stats.transfers += 1
        stats.busy_s += time.monotonic() - t0
        tel = client.telemetry()
        stats.rtt_ms, stats.retransmit_rate = tel.rtt_ms, tel.retransmit_rate
        return sent
