"""Node choice sim <-> live: the inputs both drivers give the policy for picking nodes are the same
(docs/results.md 7.5): the router's own placements count at once, a decode node's free KV does
not come from telemetry, and a simulated prefill reuses only what its node holds, as live."""

from __future__ import annotations

import tomllib
from dataclasses import replace

from prfaas.cluster.keys import NodeMeta
from prfaas.core.request import RequestSpec
from prfaas.core.view import UNBOUNDED_KV_BYTES
from prfaas.deploy.config import parse_deployment
from prfaas.policy.select import best_decode, best_prefill
from prfaas.router.fleet_view import LiveFleet
from prfaas.router.membership import Membership
from prfaas.sim.engine import Simulation
from prfaas.sim.from_deployment import setup_from_deployment
from prfaas.worker.messages import Telemetry
from test_router_fleet_view import TIMEOUT, deployment
from test_sim_vs_live import TINY_TOML


def _registered(members: Membership, now: float) -> None:
    """Every node's etcd record, and no telemetry yet."""
    for rec in members.nodes.values():
        meta = NodeMeta(rec.name, rec.cluster, rec.role, f"{rec.name}:1", "h:2",
                        max_batch=20 if rec.role == "decode" else 1, epoch=1.0)  # fmt: skip
        members.register(meta, now=now)


def _pick(fleet: LiveFleet, now: float, tokens: int) -> tuple[str, str]:
    view = fleet.view(now, [], {})
    spec = RequestSpec("r", now, tokens, 8)
    pd = view.by_role("pd")
    prefill, decode = best_prefill(view, pd, spec), best_decode(pd, spec)
    assert prefill is not None and decode is not None
    return prefill[0].node_id, decode.node_id


def test_placements_in_a_row_see_each_other_without_telemetry() -> None:
    cfg = deployment(prfaas=1, pd_prefill=2, pd_decode=2)
    members = Membership(cfg)
    _registered(members, 1.0)
    fleet = LiveFleet(members, cfg.block_tokens, TIMEOUT)
    assert _pick(fleet, 1.0, 500) == ("pp0", "pd0")
    # What RouterBackend._serve and Dispatcher.prefill count when they dispatch, before any await.
    members.nodes["pd0"].decode_active += 1
    members.nodes["pd0"].decode_pending += 1
    members.nodes["pp0"].prefill_tokens += 500
    members.nodes["pp0"].prefill_inflight += 1
    assert _pick(fleet, 1.0, 500) == ("pp1", "pd1")


def test_decode_free_kv_is_not_read_from_telemetry() -> None:
    """Equal loads tie on the node name, whichever node's first telemetry has arrived and
    whatever its prefix pool holds (before: pd0, with no beat yet, counted 0 free bytes)."""
    cfg = deployment(prfaas=1, pd_prefill=1, pd_decode=2)
    members = Membership(cfg)
    _registered(members, 1.0)
    pd1 = members.nodes["pd1"]
    members.telemetry(Telemetry("pd1", 1.0, "decode", False, 0, 0, 0, 20, 1 << 40, 0, 0, 0), 1.0)
    assert pd1.beat is not None and members.nodes["pd0"].beat is None
    fleet = LiveFleet(members, cfg.block_tokens, TIMEOUT)
    view = fleet.view(1.0, [], {})
    frees = {n.node_id: n.free_kv_bytes for c in view.clusters for n in c.nodes}
    assert frees["pd0"] == frees["pd1"] == UNBOUNDED_KV_BYTES
    assert _pick(fleet, 1.0, 100)[1] == "pd0"


def _requests() -> list[RequestSpec]:
    """r1 (prefix h0) waits on pd-p0 behind r_a while pd-p1 prefills r_b, the one-block prompt
    that caches h0 with its linear state; r1 was routed before that, with no prefix counted."""

    def blocks(tag: int, n: int) -> tuple[int, ...]:
        return tuple(tag * 1000 + i for i in range(n))

    h0 = (7,)
    return [
        RequestSpec("r_a", 0.0, 384, 4, blocks(1, 24)),
        RequestSpec("r_b", 0.001, 20, 4, h0),
        RequestSpec("r_c", 0.002, 384, 4, blocks(2, 24)),
        RequestSpec("r1", 0.003, 160, 4, h0 + blocks(3, 9)),
        RequestSpec("r2", 50.0, 160, 4, h0 + blocks(4, 9)),  # all idle: h0 counted, pulled
    ]


def test_a_simulated_prefill_reuses_only_its_nodes_pool() -> None:
    cfg = parse_deployment(tomllib.loads(TINY_TOML))
    mirror = setup_from_deployment(cfg, "prfaas-static")
    assert mirror.node_pools
    runs = {}
    for name, setup in (("node", mirror), ("cluster", replace(mirror, node_pools=False))):
        result = Simulation(setup, _requests()).run()
        runs[name] = {r.spec.request_id: r for r in result.records}
    for recs in runs.values():
        assert [recs[i].prefill_node for i in ("r_a", "r_b", "r_c", "r1")] == [
            "pd-p0",
            "pd-p1",
            "pd-p1",
            "pd-p0",
        ]
    # The cluster pool serves h0 that pd-p1 cached after r1 was routed; pd-p0 never held it.
    assert runs["cluster"]["r1"].prefix_tokens == 16
    assert runs["node"]["r1"].prefix_tokens == 0
    # r2 counted h0 when routed: the live worker pulls it from pd-p1 before computing.
    assert runs["node"]["r2"].prefill_node == "pd-p0"
    assert runs["node"]["r2"].prefix_tokens == runs["cluster"]["r2"].prefix_tokens == 16
