"""Talking to workers: prefill RPCs with local retry, decode streams, liveness-aware waits."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from prfaas.router.held import HeldMissing
from prfaas.router.membership import Membership, NodeRecord
from prfaas.router.rpc import NodeClient, RpcError, Stream
from prfaas.worker.messages import (
    DecodeJob,
    PrefillJob,
    PrefillReply,
    PullSpec,
    Sampling,
    Target,
    TokenLine,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
_ENC = msgspec.json.Encoder()
_LINE = msgspec.json.Decoder(TokenLine)
_REPLY = msgspec.json.Decoder(PrefillReply)
MAX_PREFILL_ATTEMPTS = 3


class WorkerLost(Exception):
    """A worker died, hung past its heartbeat deadline, or refused the job."""

    def __init__(self, node: str, message: str) -> None:
        super().__init__(f"{node}: {message}")
        self.node = node


class DecodeLost(WorkerLost):
    """The decode node failed; before the first token the request can be re-run elsewhere."""


class Dispatcher:
    def __init__(self, members: Membership, timeout_s: float, tls: ssl.SSLContext | None = None):
        self.members = members
        self.timeout_s = timeout_s
        self.tls = tls  # the router's client context: workers must prove their node name
        # httpx for rare calls (roles, relays); the per-request hot path uses rpc.NodeClient.
        self.http = httpx.AsyncClient(
            timeout=httpx.Timeout(None, connect=5.0), verify=tls if tls is not None else True
        )
        self._clients: dict[str, NodeClient] = {}
        self._streams: dict[str, set[Stream]] = {}
        self.on_retry: Callable[[str], None] = lambda _stage: None  # prfaas_retries_total
        members.on_dead = self.node_dead

    def client(self, rec: NodeRecord) -> NodeClient:
        client = self._clients.get(rec.url)
        if client is None:
            parts = urlsplit(rec.url)
            client = NodeClient(
                parts.hostname or "127.0.0.1", parts.port or 80, self.tls, server_name=rec.name
            )
            self._clients[rec.url] = client
        return client

    def node_dead(self, node: str) -> None:
        """Break every stream from a dead node: its readers fail now instead of waiting."""
        for stream in self._streams.pop(node, set()):
            stream.close()
        # A restarted worker listens on a new port: the old client (and its idle connections)
        # would otherwise stay in the map forever.
        rec = self.members.nodes.get(node)
        client = self._clients.pop(rec.url, None) if rec is not None else None
        if client is not None:
            client.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def watch(self, aw: Awaitable[T], node: str) -> T:
        """Await `aw`, but give up as soon as `node` stops heartbeating (never hang on it)."""
        task = asyncio.ensure_future(aw)
        period = self.members.dead_after_s / 2
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=period)
                if done:
                    return task.result()
                if not self.members.nodes[node].alive:
                    raise WorkerLost(node, "stopped heartbeating")
        finally:
            if not task.done():
                task.cancel()

    def _lost(self, rec: NodeRecord, exc: BaseException) -> WorkerLost:
        if isinstance(exc, RpcError | httpx.TransportError):
            self.members.mark_dead(rec.name)  # it comes back with its next heartbeat if alive
        rec.failures += 1
        return WorkerLost(rec.name, f"{type(exc).__name__}: {exc}")

    # -- prefill ---------------------------------------------------------------------------
    async def prefill(self, rec: NodeRecord, job: PrefillJob, work_tokens: int) -> PrefillReply:
        """`work_tokens`: the incremental (uncached) tokens, the unit of node queues."""
        rec.prefill_tokens += work_tokens
        rec.prefill_inflight += 1
        try:
            reply = await self.watch(self.client(rec).post("/prefill", _ENC.encode(job)), rec.name)
        except RpcError as exc:
            raise self._lost(rec, exc) from None
        finally:
            rec.prefill_tokens -= work_tokens
            rec.prefill_inflight -= 1
        if reply.status != 200:
            text = reply.body[:300].decode(errors="replace")
            raise self._lost(rec, RuntimeError(f"HTTP {reply.status}: {text}"))
        rec.served += 1
        return _REPLY.decode(reply.body)

    async def prefill_with_retry(
        self,
        rid: str,
        tokens: tuple[int, ...],
        sampling: Sampling,
        first: str,
        decode: NodeRecord,
        pull: PullSpec | None,
        prefix_tokens: int,
        held_tokens: int = 0,
    ) -> tuple[PrefillReply, str]:
        """Prefill on `first`; if that worker dies or its transfer fails, retry on a local PD-P
        node of the decode node's cluster (the KV no longer crosses the WAN). `held_tokens`: the
        prefix the decode node's cluster holds, which a sender in another cluster leaves out."""
        target = Target(decode.name, decode.transfer_host, decode.transfer_port)
        tried: list[str] = []
        node = first
        errors: list[str] = []
        for attempt in range(MAX_PREFILL_ATTEMPTS):
            rec = self.members.nodes[node]
            tried.append(node)
            target = self.target(rec.cluster, decode)
            held = held_tokens if rec.cluster != decode.cluster else 0
            job = PrefillJob(
                rid, attempt, tokens, sampling, target, pull if attempt == 0 else None, held
            )
            try:
                work = len(tokens) - (prefix_tokens if attempt == 0 else 0)
                return await self.prefill(rec, job, work), node
            except WorkerLost as exc:
                errors.append(str(exc))
                log.warning("prefill of %s failed on %s (%s); retrying locally", rid, node, exc)
            if not self.members.nodes[decode.name].alive:
                break
            fallback = self.local_prefill(decode.cluster, exclude=tried)
            if fallback is None:
                break
            node = fallback
            self.on_retry("prefill")
        raise WorkerLost(node, "prefill failed: " + "; ".join(errors))

    @staticmethod
    def target(src_cluster: str, dst: NodeRecord) -> Target:
        """How a sender in `src_cluster` reaches `dst`'s transfer port: via the WAN relay of that
        link direction when there is one, else directly."""
        host, port = dst.relays.get(src_cluster, (dst.transfer_host, dst.transfer_port))
        return Target(dst.name, host, port)

    def local_prefill(self, cluster: str, exclude: list[str]) -> str | None:
        """The least-loaded usable prefill node of `cluster` (any cluster if it has none)."""
        for scope in (cluster, None):
            cands = [r for r in self.members.alive("prefill", scope) if r.name not in exclude]
            if cands:
                best = min(cands, key=lambda r: (r.prefill_tokens, r.name))
                return best.name
        return None

    # -- decode ----------------------------------------------------------------------------
    async def open_decode(self, rec: NodeRecord, job: DecodeJob) -> Stream:
        """Start the decode stream; the worker answers once the KV arrived (first token next)."""
        try:
            stream = await self.client(rec).post_stream("/decode", _ENC.encode(job))
        except RpcError as exc:
            raise self._lost(rec, exc) from None
        if stream.status != 200:
            body = await stream.read_all()
            raise self._lost(rec, RuntimeError(f"HTTP {stream.status}: {body[:300]!r}"))
        return stream

    async def lines(self, rec: NodeRecord, stream: Stream) -> AsyncIterator[TokenLine]:
        """The decode stream's lines; if the node dies, node_dead() breaks the stream at once."""
        live = self._streams.setdefault(rec.name, set())
        live.add(stream)
        try:
            async for raw in stream.lines():
                if not raw:
                    continue
                line = _LINE.decode(raw)
                if line.err is not None:
                    if line.held_missing:  # before any token: the router re-runs it (resume.py)
                        raise HeldMissing(rec.name, line.err)
                    raise WorkerLost(rec.name, line.err)
                yield line
                if line.f is not None:
                    return
            raise WorkerLost(rec.name, "decode stream ended early")
        except RpcError as exc:
            raise self._lost(rec, exc) from None
        finally:
            live.discard(stream)
            stream.close()

    async def post(self, url: str, body: object) -> httpx.Response:
        """POST to a node's control URL, checking that the server is that node."""
        node = next((r.name for r in self.members.nodes.values() if r.url and
                     url.startswith(r.url + "/")), None)
        if node is None:
            raise httpx.InvalidURL(f"{url} is no known node's control URL")
        return await self.http.post(
            url, content=_ENC.encode(body), extensions={"sni_hostname": node}
        )
