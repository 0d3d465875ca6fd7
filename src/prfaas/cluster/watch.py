"""A live view of a deployment's registered nodes: one snapshot read, then a watch from there on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import msgspec

from prfaas.cluster.keys import NodeMeta, decode_node, nodes_prefix

RETRY_S = 0.5
Listener = Callable[[str, Any], None]  # (name, record or None once deleted)


class NodeWatch:
    """`nodes` maps node name -> NodeMeta for every node whose lease is alive (or, with `prefix`
    and `decode`, name -> record for another folder of keys, e.g. the router replicas).

    The snapshot and the watch are joined at a revision (watch from snapshot revision + 1), so no
    change between the two is missed; a broken watch (etcd restarted) is re-joined the same way,
    reporting only what changed meanwhile. Listeners get (name, meta) on a put, (name, None) on a
    delete.
    """

    def __init__(self, client: Any, deployment: str, prefix: bytes | None = None,
                 decode: Callable[[bytes], Any] = decode_node) -> None:
        self.client = client
        self.deployment = deployment
        self.prefix = prefix if prefix is not None else nodes_prefix(deployment)
        self.decode = decode  # another prefix of records (e.g. routers/) with its own type
        self.nodes: dict[str, Any] = {}
        self.listeners: list[Listener] = []
        self.changed = asyncio.Condition()
        self.ignored = 0  # values that did not decode (written by something else)
        self.reconnects = 0  # watch streams that broke and were re-established
        self._raw: dict[str, bytes] = {}  # the stored values (a resync reports only changes)
        self._task: asyncio.Task[None] | None = None
        self._watch: Any = None

    async def start(self) -> None:
        await self._sync()
        self._task = asyncio.create_task(self._follow(), name=f"watch {self.deployment}")

    async def _sync(self) -> None:
        """Read the snapshot, report what changed since the last one, watch from there on."""
        snapshot = await self.client.get_prefix(self.prefix)
        present = set()
        for kv in snapshot:
            present.add(self._name(kv.key))
            if self._raw.get(self._name(kv.key)) != kv.value:
                self._apply(kv.key, kv.value)
        for name in set(self._raw) - present:
            self._apply(self.prefix + name.encode(), None)
        revision = snapshot.header.revision
        self._watch = await self.client.watch_prefix(self.prefix, start_revision=revision + 1)

    async def _follow(self) -> None:
        while True:
            try:
                async for event in self._watch:
                    self._apply(event.kv.key, event.kv.value if event.kind == "PUT" else None)
                    async with self.changed:
                        self.changed.notify_all()
            except Exception:  # etcd restarted or unreachable: the watch stream broke
                self.reconnects += 1
            await self._resync()
            async with self.changed:
                self.changed.notify_all()

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RETRY_S)
            try:
                await self._sync()
                return
            except Exception:  # still unreachable: keep trying; leases outlive short outages
                continue

    def _name(self, key: bytes) -> str:
        return key.decode().removeprefix(self.prefix.decode())

    def _apply(self, key: bytes, value: bytes | None) -> None:
        name = self._name(key)
        if value is None:
            self._raw.pop(name, None)
        else:
            self._raw[name] = value
        meta: NodeMeta | None = None
        if value is not None:
            try:
                meta = self.decode(value)
            except msgspec.DecodeError:
                self.ignored += 1
                return
            self.nodes[name] = meta
        else:
            self.nodes.pop(name, None)
        for listener in self.listeners:
            listener(name, meta)

    async def wait_for(self, predicate: Callable[[dict[str, NodeMeta]], bool],
                       timeout_s: float) -> bool:
        """Wait until `predicate(nodes)` holds; False on timeout."""
        async def until() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: predicate(self.nodes))

        try:
            await asyncio.wait_for(until(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        if self._watch is not None:
            with contextlib.suppress(Exception):
                await self._watch.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
