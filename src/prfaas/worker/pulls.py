"""Cache pulls between nodes: fetch a prefix from its holder, or serve one to a puller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx
import msgspec

from prfaas.cache.hashing import token_block_hashes
from prfaas.worker.errors import WorkerError
from prfaas.worker.kvlink import Inbound, Layer
from prfaas.worker.messages import PrefillJob, PushJob, PushReply, Target

if TYPE_CHECKING:
    from prfaas.worker.node import WorkerNode

log = logging.getLogger("prfaas.worker.node")
PULL_TIMEOUT_S = 60.0


async def pull_prefix(node: WorkerNode, job: PrefillJob) -> int:
    """Fetch a cached prefix from its holder into this pool; a failed pull only costs time."""
    assert job.pull is not None
    hashes = token_block_hashes(job.token_ids, node.engine.block_tokens)[: job.pull.blocks]
    if not hashes or node.pool.peek(hashes).usable_blocks >= len(hashes):
        return 0
    key = f"pull:{job.request_id}:{job.attempt}"
    try:
        inbound = await request_push(node, job.pull.src_node, key, hashes, job.pull.target)
        kept = await node.engine.import_blocks(node.pool, hashes, inbound)
    except (httpx.HTTPError, TimeoutError, ValueError, KeyError) as exc:
        log.warning("cache pull for %s from %s failed: %s", job.request_id, job.pull.src_node, exc)
        return 0
    return kept * node.engine.block_tokens


async def request_push(
    node: WorkerNode, src_node: str, key: str, hashes: Sequence[int], target: Target
) -> Inbound:
    """Ask `src_node` to push the leading blocks `hashes` to `target` (this node, or a relay in
    front of it) as transfer `key`; the blocks as they arrive. The holder is a live member found
    by name: an address never comes from a job. KeyError: no such peer."""
    src_url = node.peers.get(src_node)
    if src_url is None:
        raise KeyError(f"{src_node!r} is no known peer")
    fut = node.kv.expect(key)
    try:
        resp = await node.http.post(
            f"{src_url}/push",
            content=msgspec.json.encode(PushJob(key, list(hashes), len(hashes), target)),
            extensions={"sni_hostname": src_node},  # it must prove that name
        )
        resp.raise_for_status()
        return await asyncio.wait_for(fut, PULL_TIMEOUT_S)
    finally:
        node.kv.forget(key)


async def serve_push(node: WorkerNode, job: PushJob) -> PushReply:
    """Serve a cache pull: send the leading blocks of `hashes` to the requesting node."""
    node._check_target(job.target)
    if node.faults.take("evict_before_push"):  # the race: evicted since the router's decision
        await _evict_all(node)
    try:
        layers = await node.engine.export_blocks(node.pool, job.hashes, job.blocks)
    except KeyError as exc:
        raise WorkerError(f"node {node.name} no longer holds that prefix: {exc}") from None

    async def gen() -> AsyncIterator[Layer]:
        for layer in layers:
            yield layer

    sent, _ = await node._send(job.target, job.transfer_id, gen())
    return PushReply(job.blocks, sent)


async def _evict_all(node: WorkerNode) -> None:
    """Empty the pool on the thread that owns it (a real engine's compute thread)."""
    executor = getattr(node.engine, "executor", None)
    if executor is None:
        node.pool.evict_all()
    else:
        await asyncio.get_running_loop().run_in_executor(executor, node.pool.evict_all)
