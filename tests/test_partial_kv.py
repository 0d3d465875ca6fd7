"""Only the missing KV crosses (paper §3.3): what the decode cluster holds is left out live too."""

from __future__ import annotations

import tomllib

import pytest

from live_support import EMULATED_TOML
from prfaas.deploy.config import parse_deployment
from prfaas.policy.placement import Placement
from prfaas.router.backend import RouterBackend
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
    assert backend._held_tokens(_placement(True), per_node, 1000) == 3 * 16
    assert backend._held_tokens(_placement(True), per_node, 20) == 20
    assert backend._held_tokens(_placement(False), per_node, 1000) == 0  # local: intra-cluster
