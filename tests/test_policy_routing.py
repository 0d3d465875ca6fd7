"""Routing policies: table-driven cases for each rule, property tests for invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.core.request import RequestSpec
from prfaas.core.ties import tie_rank, tie_seed
from prfaas.core.view import CacheMatch, ClusterState, ClusterView, LinkView, NodeView
from prfaas.errors import UsageError
from prfaas.policy import PolicyParams, get_policy, policy_names, route
from prfaas.policy.routing import Pressure, effective_threshold

P = PolicyParams(threshold_tokens=20_000, threshold_by_gbps=((10.0, 30_000), (100.0, 20_000)))
GIB = 2**30


def prefill(node_id: str, queue: int = 0, tokens: int = 0, draining: bool = False) -> NodeView:
    return NodeView(node_id, "prefill", queue, tokens, 1 if tokens else 0, 1, 0, draining)


def decode(
    node_id: str, running: int = 0, queue: int = 0, free: int = 64 * GIB, draining: bool = False
) -> NodeView:
    return NodeView(node_id, "decode", queue, 0, running, 20, free, draining)


def view(
    *,
    remote: tuple[NodeView, ...] = (prefill("prfaas-00"), prefill("prfaas-01")),
    local: tuple[NodeView, ...] = (
        prefill("pd-00"),
        prefill("pd-01"),
        decode("pd-02"),
        decode("pd-03"),
    ),
    gbps: float = 100.0,
    egress: float = 1.0,
    backlog: int = 0,
    matches: tuple[CacheMatch, ...] = (),
) -> ClusterView:
    clusters = (ClusterState("pd", "pd", local), ClusterState("prfaas", "prfaas", remote))
    links = (
        LinkView("pd", "prfaas", gbps, 0.0, 0, 10.0, 0.0),
        LinkView("prfaas", "pd", gbps, egress, backlog, 10.0, 0.0),
    )
    return ClusterView(100.0, clusters, links, matches)


def req(tokens: int, kv: int = GIB) -> RequestSpec:
    return RequestSpec("r", 100.0, tokens, 100, (), kv)


# Two idle nodes tie; the policy gives a tie to the node the request prefers (core/ties.py).
LOCAL, REMOTE = ("pd-00", "pd-01"), ("prfaas-00", "prfaas-01")

CASES = [
    # (policy, view kwargs, input tokens, expected prefill node (or the tied nodes), pull or None)
    ("homogeneous", {}, 50_000, LOCAL, None),
    (
        "homogeneous",
        {"local": (prefill("pd-00", 2, 30_000), prefill("pd-01"), decode("pd-02"))},
        50_000,
        "pd-01",
        None,
    ),
    ("naive", {}, 1_000, REMOTE, None),
    ("prfaas-static", {}, 20_001, REMOTE, None),
    ("prfaas-static", {}, 20_000, LOCAL, None),
    # static subtracts only the PD cluster's own prefix, never pulls
    ("prfaas-static", {"matches": (CacheMatch("pd", 10_240),)}, 25_000, LOCAL, None),
    ("prfaas-static", {"matches": (CacheMatch("prfaas", 10_240),)}, 25_000, REMOTE, None),
    # prfaas, bandwidth abundant: best cache anywhere, pull when the holder differs
    ("prfaas", {"matches": (CacheMatch("prfaas", 10_240),)}, 25_000, LOCAL, ("prfaas", "pd")),
    ("prfaas", {"matches": (CacheMatch("pd", 4_096),)}, 60_000, REMOTE, ("pd", "prfaas")),
    # ... but a pull too small to matter is skipped
    ("prfaas", {"matches": (CacheMatch("pd", 1_024),)}, 60_000, REMOTE, None),
    # prfaas, bandwidth scarce (utilisation 70%): cluster-local caches only, no pull
    (
        "prfaas",
        {"egress": 70.0, "matches": (CacheMatch("prfaas", 10_240),)},
        25_000,
        REMOTE,
        None,
    ),
    # link capacity dropped to 10 Gbps: the planner's t for 10 Gbps (30,000) applies
    ("prfaas", {"gbps": 10.0}, 25_000, LOCAL, None),
    ("prfaas", {"gbps": 10.0}, 31_000, REMOTE, None),
    # a KV backlog on the link raises t: a request that would go remote stays local
    ("prfaas", {"backlog": 6 * 12_500_000_000}, 30_000, LOCAL, None),
    # a PD-P queue surge lowers t: a request that would stay local goes remote
    (
        "prfaas",
        {"local": (prefill("pd-00", 6, 60_000), prefill("pd-01", 6, 60_000), decode("pd-02"))},
        15_000,
        REMOTE,
        None,
    ),
    # draining nodes take no work
    (
        "prfaas",
        {"remote": (prefill("prfaas-00", draining=True), prefill("prfaas-01"))},
        50_000,
        "prfaas-01",
        None,
    ),
    # no PrfaaS node at all: long requests fall back to PD-P
    ("prfaas", {"remote": ()}, 50_000, LOCAL, None),
]


@pytest.mark.parametrize(("policy", "kwargs", "tokens", "node", "pull"), CASES)
def test_routing_table(
    policy: str,
    kwargs: dict,
    tokens: int,
    node: str | tuple[str, ...],
    pull: tuple[str, str] | None,
) -> None:
    placement = route(view(**kwargs), req(tokens), P, policy)
    if not isinstance(node, str):
        node = min(node, key=lambda n: tie_rank(n, tie_seed(req(tokens))))
    assert placement.prefill_node == node, placement.reason
    assert placement.reason
    got = (
        (placement.cache_pull.src_cluster, placement.cache_pull.dst_cluster)
        if placement.cache_pull
        else None
    )
    assert got == pull, placement.reason
    assert placement.decode_node.startswith("pd-")


def test_decode_choice_prefers_room_then_fewest_then_memory() -> None:
    local = (
        prefill("pd-00"),
        decode("pd-01", running=20),
        decode("pd-02", running=5),
        decode("pd-03", running=5, free=100 * GIB),
        decode("pd-04", running=1, free=GIB // 2),
    )
    placement = route(view(local=local), req(1_000, kv=GIB), P, "homogeneous")
    # pd-04 is least loaded but cannot hold 1 GiB now; pd-03 has room and the most memory
    assert placement.decode_node == "pd-03"


def test_rejects_when_no_decode_node() -> None:
    placement = route(view(local=(prefill("pd-00"),)), req(1_000), P, "prfaas")
    assert placement.rejected and "decode" in placement.reason


def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(UsageError, match="homogeneous, naive, prfaas-static, prfaas"):
        get_policy("fastest")
    assert policy_names() == ["homogeneous", "naive", "prfaas-static", "prfaas"]


@pytest.mark.parametrize(
    ("pressure", "expect"),
    [
        (Pressure(0.1, 0.0, 100.0, 0.0, 0.0), 20_000),  # calm: the planner's t
        (Pressure(0.1, 0.0, 10.0, 0.0, 0.0), 30_000),  # capacity drop: table lookup
        (Pressure(0.1, 0.0, 5.0, 0.0, 0.0), 30_000),  # below the table: its smallest entry
        (Pressure(0.95, 0.0, 100.0, 0.0, 0.0), 21_000),  # 95% utilisation: gentle early raise
        (Pressure(0.1, 6.0, 100.0, 0.0, 0.0), 40_000),  # 6 s link backlog: wait gap 5 s over slack
        (Pressure(0.1, 0.0, 100.0, 0.0, 10.0), 5_000),  # PD-P queue: lowered, bounded by max_raise
    ],
)
def test_effective_threshold(pressure: Pressure, expect: int) -> None:
    params = replace(P, local_service_s=2.0, remote_service_s=2.0)
    t, _ = effective_threshold(params, pressure)
    assert t == pytest.approx(expect, rel=0.01)


nodes = st.builds(
    lambda i, q, tok, d: prefill(f"n{i}", q, tok, d),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(0, 100_000),
    st.booleans(),
)


@settings(max_examples=150, deadline=None)
@given(
    remote=st.lists(nodes, max_size=3, unique_by=lambda n: n.node_id),
    local_prefill=st.lists(nodes, max_size=3, unique_by=lambda n: n.node_id),
    decodes=st.lists(
        st.tuples(st.integers(0, 25), st.integers(0, 5), st.booleans()), min_size=1, max_size=3
    ),
    tokens=st.integers(1, 200_000),
    m_pd=st.integers(0, 100),
    m_remote=st.integers(0, 100),
    util=st.floats(0, 1.2),
    backlog=st.integers(0, 10**11),
    gbps=st.floats(0.5, 200),
    policy=st.sampled_from(["homogeneous", "naive", "prfaas-static", "prfaas"]),
)
def test_placement_invariants(
    remote: list[NodeView],
    local_prefill: list[NodeView],
    decodes: list[tuple[int, int, bool]],
    tokens: int,
    m_pd: int,
    m_remote: int,
    util: float,
    backlog: int,
    gbps: float,
    policy: str,
) -> None:
    remote_nodes = tuple(replace(n, node_id="prfaas-" + n.node_id) for n in remote)
    local = tuple(replace(n, node_id="pd-" + n.node_id) for n in local_prefill) + tuple(
        decode(f"pd-d{i}", r, q, draining=d) for i, (r, q, d) in enumerate(decodes)
    )
    matches = tuple(
        m for m in (CacheMatch("pd", m_pd * 512), CacheMatch("prfaas", m_remote * 512)) if m.tokens
    )
    v = view(
        remote=remote_nodes,
        local=local,
        gbps=gbps,
        egress=util * gbps,
        backlog=backlog,
        matches=matches,
    )
    placement = route(v, req(tokens), P, policy)
    assert placement == route(v, req(tokens), P, policy)  # pure: same input, same decision
    assert placement.reason
    if placement.rejected:
        return
    cluster = v.node_cluster(placement.prefill_node)
    node = next(n for n in cluster.nodes if n.node_id == placement.prefill_node)
    assert node.role == "prefill" and not node.draining
    dec = next(n for c in v.clusters for n in c.nodes if n.node_id == placement.decode_node)
    assert dec.role == "decode" and not dec.draining
    assert v.node_cluster(dec.node_id).role == "pd"
    assert placement.offloaded == (cluster.role == "prfaas")
    assert 0 <= placement.prefix_tokens < tokens
    if policy == "homogeneous":
        assert not placement.offloaded
    if placement.cache_pull is not None:
        assert policy == "prfaas"
        assert placement.cache_pull.dst_cluster == cluster.name != placement.cache_pull.src_cluster


@given(st.integers(1, 150_000), st.integers(1, 50_000))
def test_static_offload_is_monotone_in_length(tokens: int, extra: int) -> None:
    a = route(view(), req(tokens), P, "prfaas-static")
    b = route(view(), req(tokens + extra), P, "prfaas-static")
    assert not (a.offloaded and not b.offloaded)


def test_placement_records_the_planned_t_apart_from_the_triggers() -> None:
    """The planned t is the threshold search's t for the link the view shows (what the control
    loop sets); the effective t is that scaled by the per-request queue / egress triggers."""
    params = replace(P, local_service_s=2.0, remote_service_s=2.0)
    busy_pd = (prefill("pd-00", 6, 60_000), prefill("pd-01", 6, 60_000), decode("pd-02"))
    slow = route(view(gbps=10.0, local=busy_pd), req(25_000), params, "prfaas")
    assert slow.planned_threshold_tokens == 30_000  # the table's t at 10 Gbps
    assert slow.threshold_tokens < 30_000  # PD-P backed up: lowered for this request only
    calm = route(view(gbps=100.0), req(25_000), params, "prfaas")
    assert calm.planned_threshold_tokens == calm.threshold_tokens == 20_000
    static = route(view(gbps=10.0), req(25_000), params, "prfaas-static")
    assert static.planned_threshold_tokens == static.threshold_tokens == 20_000
