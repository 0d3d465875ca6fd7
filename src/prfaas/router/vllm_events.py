"""Subscribe to each vLLM node's KV events (ZMQ SUB) and keep the global prefix index current."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import zmq
import zmq.asyncio

from prfaas.cache.events import EventDecodeError, EventFedIndex, decode_batch
from prfaas.cache.index import GlobalPrefixIndex
from prfaas.cache.pool import CacheEvent

log = logging.getLogger(__name__)


class EventSubscriber:
    """One SUB socket per node; every batch goes through that node's `EventFedIndex`."""

    def __init__(self, index: GlobalPrefixIndex) -> None:
        self.index = index
        self.ctx = zmq.asyncio.Context()
        self.feeds: dict[str, EventFedIndex] = {}
        self.batches = 0
        self.bad_batches = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _sink(self, location: str, event: CacheEvent) -> None:
        self.index.apply(location, event)

    def start(self, node: str, endpoint: str) -> None:
        feed = EventFedIndex(node, self._sink)
        self.feeds[node] = feed
        self._tasks.append(asyncio.ensure_future(self._run(node, endpoint, feed)))

    async def _run(self, node: str, endpoint: str, feed: EventFedIndex) -> None:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(endpoint)
        try:
            while True:
                frames = await sock.recv_multipart()
                if len(frames) < 3:
                    continue
                try:
                    _, events = decode_batch(frames[-1])
                except EventDecodeError as exc:
                    self.bad_batches += 1
                    log.warning("bad KV event batch from %s: %s", node, exc)
                    continue
                self.batches += 1
                feed.apply(events)
        finally:
            sock.close(linger=0)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.ctx.term()
