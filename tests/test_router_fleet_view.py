"""The router's incremental views (router/fleet_view.py) decide exactly as RouterAdapter's views
rebuilt from every membership record, through any sequence of registrations and telemetry,
dispatch accounting, deaths, drains, telemetry timeouts and changes in the number of replicas."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.cluster.keys import NodeMeta
from prfaas.core.request import RequestSpec
from prfaas.deploy.config import parse_deployment
from prfaas.policy import PolicyParams, get_policy, policy_names
from prfaas.router.adapter import RouterAdapter, TransferTelemetry
from prfaas.router.decision_log import SUMMARY_NODES, view_summary
from prfaas.router.fleet_view import LiveFleet
from prfaas.router.live_view import index_match, membership_records
from prfaas.router.membership import Membership
from prfaas.worker.messages import Telemetry

TIMEOUT = 2.0


def deployment(prfaas: int = 3, pd_prefill: int = 3, pd_decode: int = 3) -> Any:
    return parse_deployment(
        {
            "deployment": {"name": "t", "block_tokens": 16},
            "engine": {"kind": "emulated", "kv_profile": "paper-table5"},
            "policy": {"name": "prfaas"},
            "router": {"dead_after_s": TIMEOUT},
            "clusters": [
                {
                    "name": "prfaas",
                    "role": "prfaas",
                    "nodes": [
                        {"name": "p", "count": prfaas, "role": "prefill", "hardware": "H200"}
                    ],
                },
                {
                    "name": "pd",
                    "role": "pd",
                    "nodes": [
                        {"name": "pp", "count": pd_prefill, "role": "prefill"},
                        {"name": "pd", "count": pd_decode, "role": "decode"},
                    ],
                },
            ],
            "links": [{"src": "prfaas", "dst": "pd", "gbps": 100.0, "rtt_ms": 20.0}],
        }
    )


def beat(members: Membership, rec: Any, free: int, now: float, limit: int = 0,
         queue: int = 0) -> None:
    """What the router sees of a live node: its etcd record, then its telemetry."""
    members.register(NodeMeta(rec.name, rec.cluster, rec.role, f"{rec.name}:1", "h:2",
                              max_batch=rec.max_batch, epoch=1.0, max_context_tokens=limit),
                     now=now)  # fmt: skip
    members.telemetry(Telemetry(rec.name, 1.0, rec.role, False, queue, queue * 900, queue % 2,
                                rec.max_batch, free, 0, 0, 0), now=now)  # fmt: skip


def _apply(members: Membership, names: list[str], op: tuple[Any, ...], now: float) -> None:
    kind, i, a, b = op
    rec = members.nodes[names[i % len(names)]]
    if kind == "beat":
        beat(members, rec, a * 2**30, now - b / 4, queue=b)
    elif kind == "report":  # telemetry alone, often repeating the last (a quiet report)
        old = rec.beat
        free = old.free_kv_bytes if old is not None and a < 3 else a * 2**30
        queue = old.queue_len if old is not None and a < 3 else b
        members.telemetry(Telemetry(rec.name, 1.0, rec.role, False, queue, queue * 900,
                                    queue % 2, rec.max_batch, free, 0, 0, 0),
                          now=now - b / 8)  # fmt: skip
    elif kind == "replicas":
        members.set_replicas(1 + a % 2)
    elif kind == "prefill":
        rec.prefill_inflight, rec.prefill_tokens = a, a * b * 1000
    elif kind == "decode":
        rec.decode_active, rec.decode_pending = a + b, b
    elif kind == "dead":
        members.mark_dead(rec.name)
    elif kind == "drain":
        rec.draining, rec.converting = bool(a % 2), bool(b % 3 == 0)


OPS = st.tuples(
    st.sampled_from(
        ["beat", "beat", "report", "report", "prefill", "decode", "dead", "drain", "replicas"]
    ),
    st.integers(0, 100),
    st.integers(0, 4),
    st.integers(0, 12),
)


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.lists(OPS, max_size=6), st.floats(0.0, 1.5)), min_size=1, max_size=25))
def test_incremental_views_decide_like_rebuilt_views(steps: list[Any]) -> None:
    cfg = deployment()
    members = Membership(cfg)
    names = sorted(members.nodes)
    fleet = LiveFleet(members, cfg.block_tokens, TIMEOUT)
    adapter = RouterAdapter(cfg.block_tokens, TIMEOUT)
    telemetry = [TransferTelemetry("prfaas", "pd", 100.0, 40.0, 0, 20.0)]
    params = PolicyParams(threshold_tokens=2000, min_pull_tokens=16)
    now = 10.0
    for k, (ops, dt) in enumerate(steps):
        now += dt
        for op in ops:
            _apply(members, names, op, now)
        per_node = {names[k % len(names)]: 3, names[(5 * k) % len(names)]: 1}
        matches = index_match(members, per_node)
        request = RequestSpec("r", now, 500 + 700 * k, 16, (), (k % 4) * 2**30)
        fast = fleet.view(now, telemetry, matches)
        slow = adapter.build_view(now, membership_records(members), telemetry, matches)
        assert [c.name for c in fast.clusters] == [c.name for c in slow.clusters]
        for f, s in zip(fast.clusters, slow.clusters, strict=True):
            assert sorted(f.nodes, key=lambda n: n.node_id) == list(s.nodes)
        assert fast.matches == slow.matches
        for name in policy_names():
            assert get_policy(name)(fast, request, params) == get_policy(name)(
                slow, request, params
            )


def test_large_views_log_only_the_chosen_nodes() -> None:
    cfg = deployment(prfaas=40, pd_prefill=30, pd_decode=10)
    members = Membership(cfg)
    for rec in members.nodes.values():
        beat(members, rec, 2**34, 1.0)
    view = LiveFleet(members, cfg.block_tokens, TIMEOUT).view(1.5, [], {})
    summary = view_summary(view, ("p0", "pd3"))
    assert summary["nodes"] == 80 > SUMMARY_NODES
    assert set(summary["prefill_queued"]) == {"p0"} and set(summary["decode_load"]) == {"pd3"}


def _scanned_context_limit(members: Membership, default: int) -> int:
    """The per-request scan the router used before Membership kept the limits (the reference)."""
    reported = [
        r.context_tokens for r in members.nodes.values() if r.alive and r.context_tokens > 0
    ]
    return min([default, *reported])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["beat", "dead"]), st.integers(0, 100),
                          st.sampled_from([0, 512, 4096, 1 << 20])), max_size=40))
def test_the_kept_context_limit_equals_the_scan(ops: list[tuple[str, int, int]]) -> None:
    members = Membership(deployment())
    names = sorted(members.nodes)
    for kind, i, limit in ops:
        rec = members.nodes[names[i % len(names)]]
        if kind == "beat":
            beat(members, rec, 1 << 30, 1.0, limit)
        else:
            members.mark_dead(rec.name)
        for default in (1000, 1 << 30):
            assert members.context_limit(default) == _scanned_context_limit(members, default)
