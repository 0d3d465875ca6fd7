"""Leader election on an etcd lease: exactly one router at a time runs a singleton task.

A candidate writes `leader/<task>` under its own lease only if the key does not exist (a
transaction on create_revision == 0). The winner keeps its lease alive; when it dies the lease
expires, the key goes, and the waiting candidates race again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from prfaas.cluster.keys import leader_key


class LeaderElection:
    """`is_leader` is True while this candidate holds the key; `leader` names the current holder."""

    def __init__(self, client: Any, deployment: str, task: str, me: str, ttl_s: int = 3) -> None:
        self.client = client
        self.key = leader_key(deployment, task)
        self.me = me
        self.ttl_s = ttl_s
        self.is_leader = False
        self.leader = ""
        self.lease: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._campaign(), name=f"campaign {self.me}")

    async def _try_acquire(self) -> bool:
        self.lease = await self.client.lease(self.ttl_s)
        tx = self.client.transactions
        won, _ = await self.client.transaction(
            compare=[tx.create(self.key) == 0],
            success=[tx.put(self.key, self.me.encode(), lease=self.lease)],
            failure=[],
        )
        if not won:
            await self.lease.revoke()
            self.lease = None
        return bool(won)

    async def _campaign(self) -> None:
        while True:
            try:
                if await self._try_acquire():
                    self.is_leader, self.leader = True, self.me
                    await self._hold()
                else:
                    await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:  # etcd unreachable: not leader until it answers again
                self.is_leader = False
                await asyncio.sleep(self.ttl_s / 3)

    async def _hold(self) -> None:
        """Refresh the lease until it is lost (refresh fails or the key is gone)."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            reply = await self.lease.refresh()
            if not getattr(reply, "TTL", 1) > 0:
                self.is_leader = False
                return

    async def _follow(self) -> None:
        """Note who leads; return when the key is deleted (then campaign again)."""
        got = await self.client.get(self.key)
        if got is None:
            return
        self.leader = got.value.decode()
        watch = await self.client.watch(self.key, start_revision=got.mod_revision + 1)
        try:
            async for event in watch:
                if event.kind == "DELETE":
                    return
                self.leader = event.kv.value.decode()
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()

    async def resign(self) -> None:
        """Stop campaigning; the key is released at once if this candidate held it."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.is_leader = False
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.revoke()
            self.lease = None
