"""Node choice sim <-> live: the inputs both drivers give the policy for picking nodes are the same
(docs/results.md 7.5): the router's own placements count at once, a decode node's free KV does
not come from telemetry, and a simulated prefill reuses only what its node holds, as live."""

from __future__ import annotations

import tomllib
from dataclasses import replace

from prfaas.cluster.keys import NodeMeta
from prfaas.core.request import RequestSpec
from prfaas.core.view import UNBOUNDED_KV_BYTES, ClusterState, NodeView
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
    prefill, decode = _pick(fleet, 1.0, 500)
    # What RouterBackend.serve_attempt and Dispatcher.prefill count when they dispatch, before
    # any await.
    members.nodes[decode].decode_active += 1
    members.nodes[decode].decode_pending += 1
    members.nodes[prefill].prefill_tokens += 500
    members.nodes[prefill].prefill_inflight += 1
    other = {"pp0": "pp1", "pp1": "pp0", "pd0": "pd1", "pd1": "pd0"}
    assert _pick(fleet, 1.0, 500) == (other[prefill], other[decode])


def test_decode_free_kv_is_not_read_from_telemetry() -> None:
    """Equal loads tie the same way whichever node's first telemetry has arrived and whatever its
    prefix pool holds (before: a node with no beat yet counted 0 free bytes and lost the tie)."""
    cfg = deployment(prfaas=1, pd_prefill=1, pd_decode=2)
    members = Membership(cfg)
    _registered(members, 1.0)
    fleet = LiveFleet(members, cfg.block_tokens, TIMEOUT)
    picks = {tokens: _pick(fleet, 1.0, tokens)[1] for tokens in range(100, 120)}
    assert set(picks.values()) == {"pd0", "pd1"}  # the request's content breaks the tie
    for name in ("pd0", "pd1"):
        beat = Telemetry(name, 1.0, "decode", False, 0, 0, 0, 20, 1 << 40, 0, 0, 0)
        members.telemetry(beat, 1.0)
        view = fleet.view(1.0, [], {})
        frees = {n.node_id: n.free_kv_bytes for c in view.clusters for n in c.nodes}
        assert frees["pd0"] == frees["pd1"] == UNBOUNDED_KV_BYTES
        assert {t: _pick(fleet, 1.0, t)[1] for t in picks} == picks


def _requests() -> list[RequestSpec]:
    """r1 (prefix h0) waits on r_a's node behind r_a while the other node prefills r_b, the
    one-block prompt that caches h0 with its linear state; r1 was routed before that, with no
    prefix counted. Later, on an idle deployment, r2.. count h0 when routed."""

    def blocks(tag: int, n: int) -> tuple[int, ...]:
        return tuple(tag * 1000 + i for i in range(n))

    h0 = (7,)
    return [
        RequestSpec("r_a", 0.0, 384, 4, blocks(1, 24)),
        RequestSpec("r_b", 0.001, 20, 4, h0),
        RequestSpec("r_c", 0.002, 384, 4, blocks(2, 24)),
        RequestSpec("r1", 0.003, 160, 4, h0 + blocks(3, 9)),
    ] + [RequestSpec(f"r2.{k}", 50.0 + k, 160, 4 + k, h0 + blocks(4 + k, 9)) for k in range(8)]


def test_a_simulated_prefill_reuses_only_its_nodes_pool() -> None:
    cfg = parse_deployment(tomllib.loads(TINY_TOML))
    mirror = setup_from_deployment(cfg, "prfaas-static")
    assert mirror.node_pools
    runs = {}
    for name, setup in (("node", mirror), ("cluster", replace(mirror, node_pools=False))):
        result = Simulation(setup, _requests()).run()
        runs[name] = {r.spec.request_id: r for r in result.records}
    for recs in runs.values():
        a, b = recs["r_a"].prefill_node, recs["r_b"].prefill_node
        assert a != b and {a, b} == {"pd-p0", "pd-p1"}
        assert (recs["r_c"].prefill_node, recs["r1"].prefill_node) == (b, a)
    # The cluster pool serves h0 that r_b's node cached after r1 was routed; r1's never held it.
    assert runs["cluster"]["r1"].prefix_tokens == 16
    assert runs["node"]["r1"].prefix_tokens == 0
    # The r2.k counted h0 when routed: a live worker pulls it from the holder before computing.
    later = [r for r in runs["node"].values() if r.spec.request_id.startswith("r2.")]
    assert any(r.prefill_node == runs["node"]["r_a"].prefill_node for r in later)
    assert all(r.prefix_tokens == 16 for r in later)


def test_a_tie_set_one_node_smaller_changes_only_the_choices_of_that_node() -> None:
    """Broken by id, one more request on the first node would move every tied choice to the next
    node (a round shifted by one); broken by the request, only the requests that preferred it
    go elsewhere, so a finish seen a millisecond later in one driver changes few decisions."""
    ids = [f"pd-d{i}" for i in range(5)]

    def choose(loaded: str | None, request: RequestSpec) -> str:
        nodes = tuple(
            NodeView(i, "decode", 1 if i == loaded else 0, 0, 3, 20, UNBOUNDED_KV_BYTES)
            for i in ids
        )
        node = best_decode((ClusterState("pd", "pd", nodes),), request)
        assert node is not None
        return node.node_id

    requests = [RequestSpec(f"r{k}", 0.0, 1000 + k, 64, (k,)) for k in range(200)]
    level = {r.request_id: choose(None, r) for r in requests}
    assert set(level.values()) == set(ids)  # no node is everyone's first choice
    moved = [r for r in requests if choose("pd-d0", r) != level[r.request_id]]
    assert moved and all(level[r.request_id] == "pd-d0" for r in moved)
    assert len(moved) < len(requests) / 2


def test_self_jitter_delays_each_send_by_less_than_the_bound() -> None:
    from prfaas.bench.simlive import jittered
    from test_sim_vs_live import _plan

    plan = _plan(20)
    moved = jittered(plan, 0.005, seed=1)
    assert moved == jittered(plan, 0.005, seed=1)  # seeded
    at = {r.index: r.send_at_s for r in plan}
    assert all(0.0 <= r.send_at_s - at[r.index] < 0.005 for r in moved)
    assert [r.send_at_s for r in moved] == sorted(r.send_at_s for r in moved)


def test_the_routers_view_counts_first_placements_into_the_arrival_cv() -> None:
    cfg = deployment(prfaas=1, pd_prefill=2, pd_decode=2)
    members = Membership(cfg)
    _registered(members, 1.0)
    fleet = LiveFleet(members, cfg.block_tokens, TIMEOUT)
    for i in range(40):  # evenly spaced first placements, as the simulator counts arrivals
        view = fleet.view(1.0 + 0.1 * i, [], {}, arrival=True)
    assert view.arrival_cv is not None and view.arrival_cv < 0.01
    for _ in range(20):  # re-placements (recovery, admission probes) are not arrivals
        again = fleet.view(6.0, [], {})
    assert again.arrival_cv == view.arrival_cv
