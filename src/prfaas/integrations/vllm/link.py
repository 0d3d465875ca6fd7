"""The connector's network side: prfaas's transfer engine on a private asyncio loop thread."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from prfaas.integrations.vllm.params import ConnectorConfig
from prfaas.security.tls import Pki
from prfaas.transfer.client import TransferClient
from prfaas.transfer.payloads import LayerPayload, ReceivedTransfer, TransferResult
from prfaas.transfer.server import TransferServer

log = logging.getLogger(__name__)
ARRIVED_TTL_S = 600.0  # pushed KV no decode request claimed is dropped after this


class LayerFeed:
    """Layers handed over by vLLM's forward thread, sent by the loop thread as they come."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop, self._count = loop, count
        self._queue: asyncio.Queue[LayerPayload] = asyncio.Queue()

    def put(self, layer: LayerPayload) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, layer)

    async def layers(self) -> AsyncIterator[LayerPayload]:
        for _ in range(self._count):
            yield await self._queue.get()


class KvLink:
    """Pushes layers to peers (prefill side) and keeps what peers pushed (decode side).

    vLLM calls the connector from its own thread; every network call runs on this object's loop
    thread, and results cross back through thread-safe dicts guarded by one lock.
    """

    def __init__(self, cfg: ConnectorConfig) -> None:
        self.cfg = cfg
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="prfaas-kvlink")
        self._thread.start()
        self._lock = threading.Lock()
        self._arrived: dict[str, tuple[float, ReceivedTransfer]] = {}
        self._dropped: set[str] = set()
        self._clients: dict[str, TransferClient] = {}
        self._connecting: dict[str, asyncio.Lock] = {}
        self._server: TransferServer | None = None
        self.tls = Pki(Path(cfg.pki), cfg.engine_id) if cfg.pki else None
        if cfg.listen is not None:
            self._call(self._start_server()).result(timeout=30)

    def _call(self, coro: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _start_server(self) -> None:
        assert self.cfg.listen is not None
        host, port = self.cfg.listen
        # With a PKI: TLS only (plain connections refused), client certificates from the run's CA.
        self._server = TransferServer(host, port, self.cfg.secret, self._on_complete,
                                      tls=self.tls.server if self.tls else None,
                                      allow_plain=self.tls is None)
        await self._server.start()

    def _on_complete(self, got: ReceivedTransfer) -> None:
        now = time.monotonic()
        with self._lock:
            if got.transfer_id in self._dropped:
                self._dropped.discard(got.transfer_id)
                return
            self._arrived[got.transfer_id] = (now, got)
            for tid in [t for t, (at, _) in self._arrived.items() if now - at > ARRIVED_TTL_S]:
                del self._arrived[tid]  # the decode request never came (router gave up)

    # ---- decode side -----------------------------------------------------------------------
    def take(self, transfer_id: str) -> ReceivedTransfer | None:
        """The transfer's verified layers once all arrived (removed from the link), else None."""
        with self._lock:
            item = self._arrived.pop(transfer_id, None)
        return None if item is None else item[1]

    def drop(self, transfer_id: str) -> None:
        """Forget a transfer whose request was aborted or timed out, now or when it lands."""
        with self._lock:
            if self._arrived.pop(transfer_id, None) is None:
                self._dropped.add(transfer_id)

    # ---- prefill side ----------------------------------------------------------------------
    def push(
        self,
        engine: str,
        transfer_id: str,
        layers: Sequence[LayerPayload],
        done: Callable[[TransferResult | None, BaseException | None], None],
    ) -> None:
        """Send layers to the peer named `engine` (its address from the config) in the background;
        `done(result, error)` runs on the loop thread."""
        total = sum(memoryview(p.data).nbytes for p in layers)
        self._start(self._push(engine, transfer_id, layers, len(layers), total), done)

    def open(
        self,
        engine: str,
        transfer_id: str,
        count: int,
        nbytes: int,
        done: Callable[[TransferResult | None, BaseException | None], None],
    ) -> LayerFeed:
        """Start a transfer of `count` layers (`nbytes` in all) that `put` hands over one by
        one while the forward runs; `done(result, error)` runs on the loop thread."""
        feed = LayerFeed(self._loop, count)
        self._start(self._push(engine, transfer_id, feed.layers(), count, nbytes), done)
        return feed

    def _start(
        self, coro: Any, done: Callable[[TransferResult | None, BaseException | None], None]
    ) -> None:
        def finished(f: Future[TransferResult]) -> None:
            exc = f.exception()
            done(None if exc else f.result(), exc)

        self._call(coro).add_done_callback(finished)

    async def _push(
        self,
        engine: str,
        transfer_id: str,
        layers: Sequence[LayerPayload] | AsyncIterator[LayerPayload],
        count: int,
        total: int,
    ) -> TransferResult:
        client = await self._client(engine)
        return await client.send(transfer_id, layers, expected_layers=count,
                                 expected_bytes=total, timeout_s=self.cfg.send_timeout_s)

    async def _client(self, engine: str) -> TransferClient:
        """One client per decode engine; concurrent pushes (layer-wise, several requests per
        step) wait for the same connection instead of racing to open their own."""
        if engine not in self.cfg.peers:
            raise KeyError(f"decode engine {engine!r} is not in this connector's peers")
        async with self._connecting.setdefault(engine, asyncio.Lock()):
            client = self._clients.get(engine)
            if client is None or not client.live_connections:
                if client is not None:
                    await client.close()
                host, port = self.cfg.peers[engine]
                # The receiver must prove it is `engine` (its certificate's name), not any node.
                client = TransferClient(host, port, self.cfg.secret,
                                        connections=self.cfg.connections,
                                        tls=self.tls.client if self.tls else None,
                                        server_name=engine)
                await client.connect()
                self._clients[engine] = client
            return client

    # ---- counters --------------------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        """Append one transfer's counters to the stats file (JSON lines), if configured."""
        log.info("prfaas kv %s", entry)
        if self.cfg.stats_path:
            with self._lock, open(self.cfg.stats_path, "a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def close(self) -> None:
        async def shut() -> None:
            for c in self._clients.values():
                await c.close()
            if self._server is not None:
                await self._server.close()

        try:
            self._call(shut()).result(timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
