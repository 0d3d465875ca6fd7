"""A node's registration: its metadata under a lease it keeps alive (no heartbeat writes).

When the node dies, freezes or loses the network, the keepalives stop, etcd expires the lease
within its TTL and deletes the key: every watcher sees the node leave. The keepalive is a lease
refresh, which changes no key and costs etcd no write to its log.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prfaas.cluster.keys import encode, node_key


class Registration:
    """`await start()` grants the lease and writes the key; `await close()` revokes it (the key
    goes at once); `refreshes` counts keepalives sent."""

    def __init__(self, client: Any, deployment: str, meta: Any, ttl_s: int = 3,
                 key: bytes | None = None) -> None:
        if ttl_s < 2:
            raise ValueError("etcd leases shorter than 2 s are rounded up by the server")
        self.client = client
        self.key = key if key is not None else node_key(deployment, meta.name)
        self.meta = meta
        self.ttl_s = ttl_s
        self.lease: Any = None
        self.refreshes = 0
        self.rejoins = 0  # times the lease had expired (a frozen process) and was granted anew
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._grant()
        self._task = asyncio.create_task(self._keepalive(), name=f"keepalive {self.meta.name}")

    async def _grant(self) -> None:
        self.lease = await self.client.lease(self.ttl_s)
        await self.client.put(self.key, encode(self.meta), lease=self.lease)

    async def _keepalive(self) -> None:
        # Three refreshes per TTL: one lost or late refresh never expires the lease.
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            with contextlib.suppress(Exception):  # etcd unreachable: retry; the TTL decides
                reply = await self.lease.refresh()
                self.refreshes += 1
                if getattr(reply, "TTL", 1) <= 0:  # expired while frozen: join again
                    self.rejoins += 1
                    await self._grant()

    async def update(self, meta: Any) -> None:
        """Rewrite the metadata under the same lease (e.g. after a role change)."""
        self.meta = meta
        await self.client.put(self.key, encode(meta), lease=self.lease)

    def pause(self) -> None:
        """Stop keeping the lease alive (tests: what a frozen node looks like to etcd)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def resume(self) -> None:
        """Keep the lease alive again (tests: SIGCONT); an expired lease is granted anew."""
        if self._task is None:
            self._task = asyncio.create_task(self._keepalive(), name=f"keepalive {self.meta.name}")

    async def close(self) -> None:
        self.pause()
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.revoke()
            self.lease = None
