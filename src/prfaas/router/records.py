"""What the router keeps of each placement (recent decisions, offload share, the control loop's
observations, metrics) and the decode stream turned into the edge's chunks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from prfaas.control.window import PrefillSample
from prfaas.policy.placement import Placement
from prfaas.router.dispatch import DecodeLost, WorkerLost
from prfaas.router.membership import NodeRecord
from prfaas.router.rpc import Stream
from prfaas.server.backend import TokenChunk, Usage
from prfaas.worker.messages import PrefillReply, PullSpec

if TYPE_CHECKING:
    from prfaas.router.backend import RouterBackend


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    time_s: float
    input_tokens: int
    cached_tokens: int
    placement: Placement
    pull: PullSpec | None


def record_prefill(
    backend: RouterBackend,
    rid: str,
    tokens: tuple[int, ...],
    p: Placement,
    pull: PullSpec | None,
    reply: PrefillReply,
    pnode: str,
) -> None:
    """A finished prefill: the control loop's samples, the recent decisions and offload share,
    the metrics (on the node that actually ran it: `pnode` differs after a retry)."""
    inc = len(tokens) - reply.reused_tokens
    cluster = backend.members.nodes[pnode].cluster
    role = backend.cfg.cluster(cluster).role
    offloaded = role == "prfaas"
    backend.observed.inc.append(inc)
    backend.observed.prefill.append(PrefillSample(role, inc, reply.compute_s * backend.time_scale))
    backend.recent_offload.append(offloaded)
    if pnode != p.prefill_node:
        p = Placement(
            pnode,
            p.decode_node,
            None,
            p.reason + f"; retried on {pnode}",
            cluster,
            0,
            p.threshold_tokens,
            offloaded,
        )
    cached = reply.reused_tokens  # pulled blocks are part of what the pool reused
    backend.decisions.appendleft(Decision(rid, time.time(), len(tokens), cached, p, pull))
    if p.threshold_tokens:
        backend.threshold_tokens = p.threshold_tokens
    m = backend.metrics
    if m is None:
        return
    m.count_route(cluster)
    m.observe_prefix(cluster, cached, len(tokens))
    m.set_offload_fraction(backend.offload_fraction())
    m.set_threshold(backend.threshold_tokens)
    dst = backend.members.nodes[p.decode_node].cluster
    link = f"{cluster}->{dst}" if cluster != dst else f"{cluster}(intra)"
    modelled_bytes = int(reply.bytes_sent / backend.cfg.engine.payload_scale)
    m.observe_transfer(link, reply.transfer_s, modelled_bytes)


async def decode_chunks(
    backend: RouterBackend, decode: NodeRecord, resp: Stream, usage: Usage
) -> AsyncIterator[TokenChunk]:
    """The decode stream as chunks; `usage` holds the prompt, the output streamed before this
    stream (a resumed request) and the cached tokens (pulled blocks count as reused)."""
    n = usage.completion_tokens
    try:
        async for line in backend.dispatch.lines(decode, resp):
            last = len(line.t) - 1
            for i, (token, text) in enumerate(zip(line.t, line.d, strict=True)):
                n += 1
                finish = line.f if i == last else None
                done = replace(usage, completion_tokens=n) if finish else None
                yield TokenChunk(text, token, finish, done, i != last)  # type: ignore[arg-type]
    except WorkerLost as exc:
        raise DecodeLost(exc.node, str(exc)) from None
    backend.observed.out.append(n - usage.completion_tokens)
