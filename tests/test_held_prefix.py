"""Only the missing KV crosses, with real tensors (transformers engine): an offloaded prefill
leaves out the prefix the decode node's cluster holds, the decode node fetches it inside its
cluster, and greedy output is the same as with the whole KV shipped."""

from __future__ import annotations

import asyncio
import math
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from prfaas.cache.hashing import token_block_hashes
from prfaas.deploy.config import DeploymentConfig, parse_deployment
from prfaas.worker.messages import (
    DecodeJob,
    HeldSpec,
    PrefillJob,
    PrefillReply,
    Sampling,
    Target,
    TokenLine,
)

pytestmark = pytest.mark.engine
pytest.importorskip("torch")

LOCAL = Path(__file__).resolve().parents[1] / "examples" / "local.toml"
PREFIX = list(b"shared system prompt: prefill as a service moves kv across datacenters. " * 2)
PROMPT = PREFIX + list(b"and then a long user turn that only this request has, " * 4)
SAMPLING = Sampling(max_tokens=12)


def _cfg(wire_dtype: str = "float32") -> DeploymentConfig:
    data = tomllib.loads(LOCAL.read_text())
    data["security"] = {"insecure": True}  # KV in plain text here: no certificates in-process
    data["engine"]["wire_dtype"] = wire_dtype
    return parse_deployment(data)


class Fleet:
    """pd-p0 (the holder), prfaas-0 (the offloaded prefill) and pd-d0 (decode) in this process,
    with real engines and KV links; pd-d0 calls pd-p0's /push through its ASGI app."""

    def __init__(self, cfg: DeploymentConfig) -> None:
        from prfaas.worker.app import build_app
        from prfaas.worker.hf import HfEngine
        from prfaas.worker.kvlink import KvLink
        from prfaas.worker.node import WorkerNode

        self.cfg = cfg
        self.nodes = {
            name: WorkerNode(
                cfg, cfg.node(name), HfEngine(cfg.engine, cfg.block_tokens), KvLink(b"k" * 32)
            )
            for name in ("pd-p0", "prfaas-0", "pd-d0")
        }
        self.holder, self.prefill, self.decode = self.nodes.values()
        transport = httpx.ASGITransport(app=build_app(self.holder))
        self.decode.http = httpx.AsyncClient(transport=transport)
        self.decode.peers = {"pd-p0": "http://pd-p0"}

    async def start(self) -> None:
        for node in self.nodes.values():
            await node.kv.start()

    @property
    def target(self) -> Target:
        return Target("pd-d0", self.cfg.node("pd-d0").advertise, self.decode.kv.port)

    def held(self, blocks: int, ids: list[int] = PROMPT) -> HeldSpec:
        hashes = token_block_hashes(ids, self.cfg.block_tokens)[:blocks]
        return HeldSpec("pd-p0", blocks, hashes, self.target)

    async def run(
        self, rid: str, held: HeldSpec | None = None, held_tokens: int = 0
    ) -> tuple[list[TokenLine], PrefillReply]:
        """One request: prefill on prfaas-0 while pd-d0 waits for its KV, then decode."""
        job = DecodeJob(rid, len(PROMPT), SAMPLING, 60.0, held)
        lines = asyncio.ensure_future(_collect(self.decode.decode(job)))
        pjob = PrefillJob(rid, 0, PROMPT, SAMPLING, self.target, None, held_tokens)
        reply = await self.prefill.prefill(pjob)
        return await lines, reply

    async def close(self) -> None:
        for node in self.nodes.values():
            await node.close()


async def _collect(stream: Any) -> list[TokenLine]:
    return [line async for line in stream]


def _tokens(lines: list[TokenLine]) -> list[int]:
    assert all(line.err is None for line in lines), lines
    return [t for line in lines for t in line.t]


def _kv_bytes_per_token(fleet: Fleet, itemsize: int) -> int:
    """Attention KV bytes per token at the wire dtype, from the model's layer template."""
    engine = fleet.prefill.engine.engine  # type: ignore[attr-defined]
    return sum(
        math.prod(t.shape) // t.shape[-2] * itemsize
        for s in engine.layer_template()
        if s.kind == "attention"
        for t in s.tensors.values()
    )


async def _warm_holder(fleet: Fleet) -> int:
    """pd-p0 prefills the shared prefix (a short local request): it now holds its blocks."""
    target = fleet.target
    await fleet.holder.prefill(PrefillJob("warm", 0, PREFIX, SAMPLING, target))
    blocks = len(PREFIX) // fleet.cfg.block_tokens
    assert fleet.holder.pool.peek(token_block_hashes(PREFIX, 32)).usable_blocks == blocks
    return blocks


@pytest.mark.parametrize("wire_dtype,itemsize", [("float32", 4), ("bfloat16", 2)])
def test_held_prefix_gives_the_same_tokens_and_ships_less(wire_dtype: str, itemsize: int) -> None:
    async def go() -> None:
        fleet = Fleet(_cfg(wire_dtype))  # in the loop: pools hand events to it
        await fleet.start()
        try:
            blocks = await _warm_holder(fleet)
            full_lines, full = await fleet.run("full")
            held = blocks * fleet.cfg.block_tokens
            part_lines, part = await fleet.run("part", fleet.held(blocks), held)
        finally:
            await fleet.close()
        assert len(_tokens(full_lines)) == SAMPLING.max_tokens
        assert _tokens(part_lines) == _tokens(full_lines)
        saved = full.bytes_sent - part.bytes_sent
        expected = held * _kv_bytes_per_token(fleet, itemsize)
        assert expected > 0 and abs(saved - expected) <= 64 * 8  # headers, alignment
        assert part.bytes_sent < full.bytes_sent

    asyncio.run(go())


def test_an_evicted_prefix_is_reported_and_the_full_kv_retry_matches() -> None:
    async def go() -> None:
        fleet = Fleet(_cfg())
        await fleet.start()
        try:
            blocks = await _warm_holder(fleet)
            # The holder needs the room between the router's decision and the decode node's ask.
            pool = fleet.holder.pool
            assert pool.reserve_transfer("squeeze", pool.capacity_bytes) and len(pool) == 0
            held = blocks * fleet.cfg.block_tokens
            lines, _ = await fleet.run("evicted", fleet.held(blocks), held)
            retry_lines, _ = await fleet.run("retry")
            full_lines, _ = await fleet.run("again")
        finally:
            await fleet.close()
        assert len(lines) == 1 and lines[0].held_missing and lines[0].err
        assert not lines[0].t
        assert _tokens(retry_lines) == _tokens(full_lines)

    asyncio.run(go())


def test_a_held_prefix_that_does_not_fit_is_reported_like_a_missing_one() -> None:
    """Blocks that do not cover what the prefill left out cannot be joined: the decode node
    reports it as held_missing (the router then re-runs the request with the whole KV)."""

    async def go() -> None:
        fleet = Fleet(_cfg())
        await fleet.start()
        try:
            blocks = await _warm_holder(fleet)
            held = blocks * fleet.cfg.block_tokens
            lines, _ = await fleet.run("short", fleet.held(blocks), held + 12)
        finally:
            await fleet.close()
        assert len(lines) == 1 and lines[0].held_missing and not lines[0].t
        assert "does not cover" in str(lines[0].err)

    asyncio.run(go())


def test_a_prefill_that_sent_everything_needs_no_held_prefix() -> None:
    """A prefill retried on a node of the decode cluster sends the whole KV: the decode node
    drops the prefix it was told to fetch and decodes the same tokens."""

    async def go() -> None:
        fleet = Fleet(_cfg())
        await fleet.start()
        try:
            blocks = await _warm_holder(fleet)
            lines, _ = await fleet.run("whole", fleet.held(blocks), 0)
            full_lines, _ = await fleet.run("again")
        finally:
            await fleet.close()
        assert _tokens(lines) == _tokens(full_lines)

    asyncio.run(go())


def test_a_held_spec_names_one_hash_per_block() -> None:
    import msgspec

    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"src_node":"pd-p0","blocks":2,"hashes":[1],'
            b'"target":{"node":"pd-d0","host":"127.0.0.1","port":1}}',
            type=HeldSpec,
        )


def test_a_decode_node_fetches_a_held_prefix_only_for_itself() -> None:
    from types import SimpleNamespace

    from prfaas.worker.held import HeldUnavailable, fetch_held

    spec = HeldSpec("pd-p0", 1, [7], Target("pd-d1", "127.0.0.1", 1))
    node = SimpleNamespace(name="pd-d0", peers={"pd-p0": "http://x"})
    job = DecodeJob("r", 40, SAMPLING, 1.0, spec)
    with pytest.raises(HeldUnavailable, match="addressed to 'pd-d1'"):
        asyncio.run(fetch_held(node, job))  # type: ignore[arg-type]
    unknown = HeldSpec("pd-p9", 1, [7], Target("pd-d0", "127.0.0.1", 1))
    with pytest.raises(HeldUnavailable, match="no known peer"):
        asyncio.run(fetch_held(node, DecodeJob("r", 40, SAMPLING, 1.0, unknown)))  # type: ignore[arg-type]
