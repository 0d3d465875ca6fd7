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


def node_of(topic: bytes) -> str:
    """`kv@NAME` or vLLM's `kv@NAME@MODEL` -> NAME."""
    text = topic.decode("utf-8", "replace")
    return text.split("@")[1] if text.startswith("kv@") and "@" in text else text


class EventSubscriber:
    """One bound SUB socket: vLLM's publisher *connects* to a non-wildcard endpoint, so the router
    binds (on a private address) and every instance publishes to it under topic `kv@NAME`."""

    def __init__(self, index: GlobalPrefixIndex) -> None:
        self.index = index
        self.ctx = zmq.asyncio.Context()
        self.feeds: dict[str, EventFedIndex] = {}
        self.batches = 0
        self.bad_batches = 0
        self._tasks: list[asyncio.Task[None]] = []

    def _sink(self, location: str, event: CacheEvent) -> None:
        self.index.apply(location, event)

    def start(self, endpoint: str, nodes: dict[str, int]) -> None:
        """Bind `endpoint`; feed events of the named nodes (name -> block size) to the index."""
        for node, block_tokens in nodes.items():
            self.feeds[node] = EventFedIndex(node, self._sink, block_tokens)
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"kv@")
        sock.bind(endpoint)
        self._tasks.append(asyncio.ensure_future(self._run(sock)))

    async def _run(self, sock: zmq.asyncio.Socket) -> None:
        try:
            while True:
                frames = await sock.recv_multipart()
                feed = self.feeds.get(node_of(frames[0])) if len(frames) >= 3 else None
                if feed is None:
                    continue  # a decode instance, or one this router does not know
                try:
                    _, events = decode_batch(frames[-1])
                except EventDecodeError as exc:
                    self.bad_batches += 1
                    log.warning("bad KV event batch from %s: %s", feed.location, exc)
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
