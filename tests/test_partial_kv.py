"""Only the missing KV crosses (paper §3.3): what the decode cluster holds is left out live too."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from live_support import EMULATED_TOML
from prfaas.deploy.config import parse_deployment
from prfaas.policy.placement import Placement
from prfaas.router.backend import RouterBackend
from prfaas.router.held import held_prefix
from prfaas.worker.emulated import EmulatedEngine


def _cfg():  # type: ignore[no-untyped-def]
    return parse_deployment(tomllib.loads(EMULATED_TOML))


def test_the_emulated_sender_leaves_out_the_held_prefix_but_not_the_state() -> None:
    cfg = _cfg()
    engine = EmulatedEngine(cfg.engine, cfg.node("prfaas-0"), cfg.block_tokens)
    full = engine.shipped_bytes(4096, 0)
    assert full == engine.payload_bytes(4096)
    half = engine.shipped_bytes(4096, 2048)
    state = engine.shipped_bytes(4096, 4096)
    assert state == pytest.approx(engine.payload_bytes(0), abs=1)  # the linear state still ships
    assert full - half == pytest.approx(engine.payload_bytes(2048) - engine.payload_bytes(0), abs=2)
    assert engine.shipped_bytes(4096, 10_000) == state


def _placement(offloaded: bool) -> Placement:
    cluster = "prfaas" if offloaded else "pd"
    node = "prfaas-0" if offloaded else "pd-p0"
    return Placement(node, "pd-d0", None, "", cluster, 0, 0, offloaded)


def test_the_router_counts_what_the_decode_cluster_holds() -> None:
    backend = RouterBackend(_cfg())
    per_node = {"pd-p0": 3, "prfaas-0": 5}  # blocks matched per node

    def held(p: Placement, n: int) -> int:
        got = held_prefix(backend, p, per_node, (), n)
        assert got.spec is None  # the emulated engine only leaves the bytes out
        return got.tokens

    assert held(_placement(True), 1000) == 3 * 16
    assert held(_placement(True), 20) == 20
    assert held(_placement(False), 1000) == 0  # local: intra-cluster


def _engine_backend() -> RouterBackend:
    """A transformers-engine router over examples/local.toml's nodes, all registered."""
    path = Path(__file__).resolve().parents[1] / "examples" / "local.toml"
    backend = RouterBackend(parse_deployment(tomllib.loads(path.read_text())))
    for i, rec in enumerate(backend.members.nodes.values()):
        rec.alive, rec.url = True, f"http://127.0.0.1:{9000 + i}"
        rec.transfer_host, rec.transfer_port = "127.0.0.1", 7000 + i
    return backend


def test_a_real_engine_names_the_holder_in_the_decode_cluster() -> None:
    backend = _engine_backend()
    hashes = tuple(range(100, 140))
    per_node = {"pd-p0": 3, "pd-d0": 2, "prfaas-0": 9}  # prfaas-0 is not in the decode cluster
    held = held_prefix(backend, _placement(True), per_node, hashes, 1000)
    assert held.tokens == 3 * 32 and held.spec is not None
    assert (held.spec.src_node, held.spec.blocks, held.spec.hashes) == ("pd-p0", 3, [100, 101, 102])
    assert held.spec.target.node == "pd-d0" and held.spec.target.port == 7002
    # The prefill sends the last token's KV at least: a 96-token prompt leaves out 2 blocks.
    assert held_prefix(backend, _placement(True), per_node, hashes, 96).tokens == 2 * 32
    assert held_prefix(backend, _placement(True), per_node, hashes, 32).spec is None
    assert held_prefix(backend, _placement(False), per_node, hashes, 1000).spec is None
    assert held_prefix(backend, _placement(True), per_node, hashes, 1000, full_kv=True).tokens == 0
    backend.members.nodes["pd-p0"].alive = False  # a holder the router cannot reach is no holder
    assert held_prefix(backend, _placement(True), per_node, hashes, 1000).spec.src_node == "pd-d0"  # type: ignore[union-attr]


def test_a_missing_held_prefix_runs_the_request_again_with_the_whole_kv() -> None:
    from prfaas.router.held import HeldMissing
    from prfaas.router.resume import recovering
    from prfaas.server.backend import CompletionRequest, TokenChunk
    from prfaas.worker.messages import Sampling

    class Stub:
        block_tokens = 16

        def __init__(self) -> None:
            self.calls: list[tuple[bool, bool]] = []
            self.counted: list[tuple[str, str]] = []

        def count(self, what: str, label: str = "") -> None:
            self.counted.append((what, label))

        async def serve_attempt(self, req, ids, hashes, sampling, t0, recovering, full_kv):  # type: ignore[no-untyped-def]
            self.calls.append((recovering, full_kv))
            if not full_kv:
                raise HeldMissing("pd-d0", "held prefix from pd-p0: evicted")
            yield TokenChunk("x", 120, "length", None, False)

    async def go() -> list[TokenChunk]:
        req = CompletionRequest("r", "m", "hi", None, max_tokens=1)
        stub = Stub()
        out = [c async for c in recovering(stub, req, (1, 2), Sampling(max_tokens=1), (0.0, 0.0))]  # type: ignore[arg-type]
        assert stub.calls == [(False, False), (True, True)]  # not shed, the whole KV
        assert stub.counted == [("retry", "held")]
        return out

    assert [c.token_id for c in asyncio.run(go())] == [120]
