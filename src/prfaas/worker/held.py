"""A prefix the decode node's own cluster holds (paper §3.3): the offloaded prefill leaves its KV
out, and the decode node fetches it from the holder inside its cluster instead."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

import httpx

from prfaas.worker.errors import WorkerError
from prfaas.worker.kvlink import Inbound
from prfaas.worker.messages import DecodeJob
from prfaas.worker.pulls import request_push

if TYPE_CHECKING:
    from prfaas.worker.node import WorkerNode

log = logging.getLogger("prfaas.worker.node")


class HeldUnavailable(Exception):
    """The held prefix could not be had (evicted, holder gone, transfer failed)."""


def left_out(held_tokens: int, num_tokens: int) -> int:
    """Prefix tokens whose KV an offloaded prefill does not send: at most all but the last token
    (its KV comes with the linear state the prefill ends at)."""
    return max(0, min(held_tokens, num_tokens - 1))


def tail_layer(state: Any, held: int) -> tuple[Any, int]:
    """What a prefill sends of one finished layer: an attention layer's KV from token `held` on
    (a message of that many fewer tokens), a linear state whole; and the message's token count."""
    from prfaas.model.engine.cache_ops import ATTENTION, LayerState

    if held <= 0 or state.kind != ATTENTION:
        return state, state.num_tokens
    kv = {name: t[:, :, held:] for name, t in state.tensors.items()}
    n = state.num_tokens - held
    return LayerState(state.index, ATTENTION, n, kv, state.conv_kernel_size), n


async def fetch_held(node: WorkerNode, job: DecodeJob) -> list[memoryview]:
    """The held blocks as one wire message (every layer at the prefix's length), from this node's
    pool or pushed by the holder named in the job; HeldUnavailable if they are gone."""
    spec = job.held
    assert spec is not None
    if spec.target.node != node.name:  # the blocks come to this node, never elsewhere
        raise HeldUnavailable(f"held prefix addressed to {spec.target.node!r}, not {node.name}")
    try:
        if spec.src_node == node.name:
            layers = await node.engine.export_blocks(node.pool, spec.hashes, spec.blocks)
            return [memoryview(b"".join(layers[0][1]))]
        return await _pushed(node, job)
    except (httpx.HTTPError, TimeoutError, KeyError, ValueError, WorkerError) as exc:
        raise HeldUnavailable(f"held prefix from {spec.src_node}: {exc}") from None


async def _pushed(node: WorkerNode, job: DecodeJob) -> list[memoryview]:
    spec = job.held
    assert spec is not None
    key = f"held:{job.request_id}:{secrets.token_hex(4)}"
    inbound = await request_push(node, spec.src_node, key, spec.hashes, spec.target)
    if int(inbound.meta.get("blocks", -1)) != spec.blocks:
        raise HeldUnavailable(f"{spec.src_node} sent {inbound.meta.get('blocks')} blocks")
    return inbound.layers


async def with_held(inbound: Inbound, fetch: asyncio.Task[list[memoryview]] | None) -> Inbound:
    """The prefill's KV joined with the held prefix it left out (none left out: as it came)."""
    end = inbound.meta.get("end") or {}
    held = int(end.get("held", 0))
    if held <= 0:
        if fetch is not None:
            fetch.cancel()  # e.g. a retry on a node of this cluster sent the whole KV
        return inbound
    if fetch is None:
        raise HeldUnavailable(f"the prefill left out {held} tokens and no holder was named")
    prefix = await fetch
    return Inbound(inbound.meta, inbound.layers, inbound.nbytes, prefix)
