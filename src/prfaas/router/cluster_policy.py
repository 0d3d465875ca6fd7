"""The routing policy shared by router replicas through etcd (`policy`: name, parameters, t).

Whichever replica changes its policy (the rebalancer's leader re-planning, or an operator's
`/internal/policy` call on any replica) writes the record; every replica watches it and applies
what another one wrote. The local state is compared with the last record seen twice a second: a
change costs one write, a steady state none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import msgspec

from prfaas.cluster.keys import PolicyRecord, decode_policy, encode, policy_key
from prfaas.policy.params import PolicyParams

log = logging.getLogger(__name__)
SYNC_S = 0.5


class PolicySync:
    def __init__(self, client: Any, deployment: str, backend: Any) -> None:
        self.client, self.backend = client, backend
        self.key = policy_key(deployment)
        self.last: PolicyRecord | None = None
        self.applied = 0  # records written by another replica and applied here
        self.joined = False  # a record existed at start: this replica joined a running deployment
        self._tasks: list[asyncio.Task[None]] = []

    def local(self) -> PolicyRecord:
        b = self.backend
        params = msgspec.json.decode(msgspec.json.encode(b.params))  # as a record decodes
        return PolicyRecord(b.policy_name, params, int(b.params.threshold_tokens))

    async def start(self) -> None:
        got = await self.client.get(self.key)
        if got is not None:
            self.joined = True
            self._apply(got.value)  # a replica joining a running deployment follows it
            start = got.mod_revision + 1
        else:
            tx = self.client.transactions
            mine = self.local()  # the first replica's startup plan, unless another was faster
            await self.client.transaction(
                compare=[tx.create(self.key) == 0],
                success=[tx.put(self.key, encode(mine))], failure=[])  # fmt: skip
            got = await self.client.get(self.key)
            self._apply(got.value)
            start = got.mod_revision + 1
        self._tasks = [asyncio.create_task(self._follow(start)), asyncio.create_task(self._sync())]

    def _apply(self, value: bytes) -> None:
        try:
            rec = decode_policy(value)
            params = msgspec.convert(rec.params, PolicyParams)
        except (msgspec.DecodeError, msgspec.ValidationError, TypeError) as exc:
            log.warning("ignored a policy record that does not decode: %s", exc)
            return
        self.last = rec
        if rec == self.local():
            return
        b = self.backend
        if rec.name != b.policy_name:
            b.set_policy(rec.name)
        b.apply_params(params)
        self.applied += 1

    async def _follow(self, start: int) -> None:
        while True:
            try:
                watch = await self.client.watch(self.key, start_revision=start)
                async for event in watch:
                    start = event.kv.mod_revision + 1
                    if event.kind == "PUT":
                        self._apply(event.kv.value)
            except Exception:  # etcd restarted or unreachable: read the record again, re-watch
                await asyncio.sleep(SYNC_S)
                with contextlib.suppress(Exception):
                    got = await self.client.get_prefix(self.key)
                    start = got.header.revision + 1
                    for kv in got:
                        if kv.key == self.key:
                            self._apply(kv.value)

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(SYNC_S)
            mine = self.local()
            if mine != self.last:
                self.last = mine
                try:
                    await self.client.put(self.key, encode(mine))
                except Exception as exc:  # etcd unreachable: retried on the next tick
                    self.last = None
                    log.warning("policy not written to etcd: %s", exc)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(BaseException):
                await t
