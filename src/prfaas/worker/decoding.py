"""The decode side of a worker: KV arrivals -> continuous batch -> per-request token streams."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from prfaas.worker.engines import Decoder, TokenOut, WorkerEngine
from prfaas.worker.held import HeldUnavailable, with_held
from prfaas.worker.kvlink import Inbound, KvLink
from prfaas.worker.messages import DecodeJob, Sampling, TokenLine

log = logging.getLogger(__name__)


class DecodeService:
    """Requests wait for their KV, then for a batch slot (BS_max), then stream one line per step
    (every token produced since the previous line, so a slow reader gets fewer, fuller lines)."""

    def __init__(
        self,
        engine: WorkerEngine,
        kv: KvLink,
        name: str,
        max_batch: int,
        fault_point: Callable[[str], None],
        on_change: Callable[[], None],
        fetch_held: Callable[[DecodeJob], Awaitable[list[memoryview]]] | None = None,
    ) -> None:
        self.engine, self.kv, self.name, self.max_batch = engine, kv, name, max_batch
        self._fault_point, self._on_change = fault_point, on_change
        self._fetch_held = fetch_held  # worker/held.py: a held prefix from its holder
        self._decoder: Decoder | None = None
        self._waiting: deque[tuple[str, Inbound, Sampling]] = deque()
        self._streams: dict[str, asyncio.Queue[TokenOut | BaseException]] = {}
        self._loop_task: asyncio.Task[None] | None = None

    @property
    def active(self) -> int:
        return self._decoder.active if self._decoder is not None else 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def busy(self) -> bool:
        return bool(self.active or self._waiting or self._streams)

    def ready(self) -> Decoder:
        if self._decoder is None:
            self._decoder = self.engine.new_decoder(self.max_batch)
        return self._decoder

    async def stream(self, job: DecodeJob) -> AsyncIterator[TokenLine]:
        """Wait for the request's KV, join the continuous batch, stream its tokens."""
        decoder = self.ready()
        rid = job.request_id
        fut = self.kv.expect(rid)
        stream: asyncio.Queue[TokenOut | BaseException] = asyncio.Queue()
        self._streams[rid] = stream
        finished = False
        # The held prefix is fetched while the prefill runs (it only moves inside this cluster).
        fetch = None
        if job.held is not None and self._fetch_held is not None:
            fetch = asyncio.ensure_future(self._fetch_held(job))
        try:
            try:
                inbound = await with_held(await asyncio.wait_for(fut, job.wait_s), fetch)
            except TimeoutError:
                yield TokenLine(err=f"no KV for {rid} reached {self.name} within {job.wait_s:g}s")
                return
            except HeldUnavailable as exc:
                log.warning("decode of %s: %s", rid, exc)
                yield TokenLine(err=f"{self.name}: {exc}", held_missing=True)
                return
            self._waiting.append((rid, inbound, job.sampling))
            self._kick()
            while not finished:
                items = [await stream.get()]
                while not stream.empty():  # coalesce whatever is ready into one line
                    items.append(stream.get_nowait())
                line = TokenLine()
                for item in items:
                    if isinstance(item, BaseException):
                        missing = isinstance(item, HeldUnavailable)  # no token was produced
                        err = f"decode failed on {self.name}: {item}"
                        yield TokenLine(err=err, held_missing=missing)
                        return
                    line.t.append(item.token_id)
                    line.d.append(item.delta)
                    if item.finish is not None:
                        line.f, finished = item.finish, True
                        break
                yield line
        finally:
            if fetch is not None and not fetch.cancel() and not fetch.cancelled():
                fetch.exception()  # retrieved: a failure it reported is no "never retrieved"
            self.kv.forget(rid)
            self._streams.pop(rid, None)
            if not finished:
                decoder.abort(rid)
                self._waiting = deque(w for w in self._waiting if w[0] != rid)
            self._on_change()

    def _kick(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._decode_loop())

    async def _decode_loop(self) -> None:
        decoder = self.ready()
        while decoder.active or self._waiting:
            while self._waiting and decoder.active < self.max_batch:
                rid, inbound, sampling = self._waiting.popleft()
                try:
                    self._deliver(await decoder.add(rid, inbound, sampling))
                except Exception as exc:  # a bad cache fails its request, not the batch
                    log.exception("cannot admit %s", rid)
                    if inbound.prefix is not None:  # the router re-runs it with the whole KV
                        exc = HeldUnavailable(f"cannot join the held prefix: {exc}")
                    self._fail(rid, exc)
            if decoder.active:
                try:
                    self._deliver(await decoder.step())
                except Exception as exc:
                    log.exception("decode step failed")
                    for rid in list(self._streams):
                        decoder.abort(rid)
                        self._fail(rid, exc)
        self._on_change()

    def _deliver(self, outs: list[TokenOut]) -> None:
        for out in outs:
            stream = self._streams.get(out.request_id)
            if stream is not None:
                stream.put_nowait(out)
            self._fault_point("die_in_decode")

    def _fail(self, rid: str, exc: BaseException) -> None:
        stream = self._streams.get(rid)
        if stream is not None:
            stream.put_nowait(exc)

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
