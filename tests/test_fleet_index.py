"""Incremental rankings (core/fleet.py) give the same routing decisions as exhaustive scans.

The reference functions below are the exhaustive node choice the policies used before issue 15,
with ties broken as core/ties.py says (among the first TIE_GROUP tied nodes by id, the one the
request prefers): every query of an indexed view must agree with them, after any update sequence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.core.fleet import ClusterIndex
from prfaas.core.request import RequestSpec
from prfaas.core.ties import TIE_GROUP, tie_rank, tie_seed
from prfaas.core.view import CacheMatch, ClusterState, ClusterView, LinkView, NodeView
from prfaas.policy import PolicyParams, get_policy, policy_names
from prfaas.policy.select import best_decode, best_prefill, queue_per_node


# -- the exhaustive reference (pre-issue-15 policy/select.py, plus the tie rule of core/ties.py) --
def _tie_group(
    nodes: list[NodeView], rank: Callable[[NodeView], tuple[Any, ...]]
) -> list[NodeView]:
    """The first TIE_GROUP nodes by id among those of the lowest rank."""
    low = min((rank(n) for n in nodes), default=None)
    return sorted((n for n in nodes if rank(n) == low), key=lambda n: n.node_id)[:TIE_GROUP]


def ref_best_prefill(
    view: ClusterView, clusters: tuple[ClusterState, ...], request: RequestSpec
) -> tuple[NodeView, ClusterState, int] | None:
    seed = tie_seed(request)
    best: tuple[int, tuple[int, str]] | None = None
    chosen: tuple[NodeView, ClusterState, int] | None = None
    for cluster in clusters:
        active = [n for n in cluster.nodes if n.role == "prefill" and not n.draining]
        # Nodes holding a prefix of their own, and the tie group of the least queued.
        holders = view.prefix_holders(cluster.name)
        group = _tie_group(active, lambda n: (n.queued_tokens,))
        for node in active:
            if node.node_id not in holders and node not in group:
                continue
            prefix = min(
                view.node_prefix_tokens(cluster.name, node.node_id), request.input_tokens - 1
            )
            key = (node.queued_tokens + request.input_tokens - prefix, tie_rank(node.node_id, seed))
            if best is None or key < best:
                best = key
                chosen = (node, cluster, prefix)
    return chosen


def ref_best_decode(clusters: tuple[ClusterState, ...], request: RequestSpec) -> NodeView | None:
    seed = tie_seed(request)
    best: tuple[int, float, int, tuple[int, str]] | None = None
    chosen: NodeView | None = None

    def rank(node: NodeView) -> tuple[int, float, int]:
        fits = (
            node.queue_len == 0
            and node.running < node.max_batch
            and node.free_kv_bytes >= request.kv_bytes
        )
        load = (node.running + node.queue_len) / max(node.max_batch, 1)
        return (0 if fits else 1, load, -node.free_kv_bytes)

    for cluster in clusters:
        active = [n for n in cluster.nodes if n.role == "decode" and not n.draining]
        for node in _tie_group(active, rank):
            key = (*rank(node), tie_rank(node.node_id, seed))
            if best is None or key < best:
                best = key
                chosen = node
    return chosen


def ref_queue_per_node(clusters: tuple[ClusterState, ...]) -> float:
    total = 0
    count = 0
    for cluster in clusters:
        for node in cluster.nodes:
            if node.role == "prefill" and not node.draining:
                total += node.queue_len
                count += 1
    return total / count if count else 0.0


# -- random fleets: small value ranges, so ties on every key are common -------------------------
def node_st(node_id: str) -> st.SearchStrategy[NodeView]:
    return st.builds(
        NodeView,
        st.just(node_id),
        st.sampled_from(["prefill", "decode"]),
        st.integers(0, 3),
        st.integers(0, 4).map(lambda k: k * 1000),
        st.integers(0, 4),
        st.integers(0, 4),
        st.integers(0, 3).map(lambda k: k * 100),
        st.sampled_from([False, False, False, True]),  # draining
    )


@st.composite
def fleets(draw: st.DrawFn) -> tuple[ClusterView, RequestSpec]:
    clusters = []
    names = {"pd": "pd", "prfaas": "prfaas", "pd2": "pd"}
    for name in draw(st.sampled_from([["pd"], ["pd", "prfaas"], ["pd", "pd2", "prfaas"]])):
        n = draw(st.integers(0, 14))
        ids = draw(st.permutations([f"{name}-{i:02d}" for i in range(n)]))
        nodes = tuple(draw(node_st(i)) for i in ids)
        clusters.append((name, names[name], nodes))
    all_ids = [n.node_id for _, _, ns in clusters for n in ns]
    matches = []
    for name, _, _ in clusters:
        if draw(st.booleans()):
            matches.append(CacheMatch(name, draw(st.integers(0, 5)) * 512))
    for _ in range(draw(st.integers(0, 4))):
        if all_ids:
            node = draw(st.sampled_from(all_ids))
            cluster = node.rsplit("-", 1)[0]
            matches.append(CacheMatch(cluster, draw(st.integers(0, 8)) * 512, node))
    request = RequestSpec(
        "r", 0.0, draw(st.integers(1, 5000)), 64, (), draw(st.integers(0, 3)) * 100
    )
    links = (LinkView("prfaas", "pd", 100.0, draw(st.floats(0, 120)), 0, 10.0, 0.0),)
    plain = ClusterView(
        0.0, tuple(ClusterState(c, r, ns) for c, r, ns in clusters), links, tuple(matches)
    )
    return plain, request


def indexed(view: ClusterView) -> ClusterView:
    clusters = tuple(
        ClusterState(c.name, c.role, index=ClusterIndex(c.nodes)) for c in view.clusters
    )
    return ClusterView(view.now_s, clusters, view.links, view.matches)


def _ids(x: tuple[NodeView, ClusterState, int] | None) -> tuple[str, str, int] | None:
    return None if x is None else (x[0].node_id, x[1].name, x[2])


@settings(max_examples=400, deadline=None)  # a loaded CI machine must not fail it
@given(fleets())
def test_indexed_and_scanned_views_choose_like_the_exhaustive_reference(
    case: tuple[ClusterView, RequestSpec],
) -> None:
    plain, request = case
    fast = indexed(plain)
    for role in ("pd", "prfaas"):
        for v in (plain, fast):
            cl = v.by_role(role)  # type: ignore[arg-type]
            assert _ids(best_prefill(v, cl, request)) == _ids(ref_best_prefill(plain, cl, request))
            assert best_decode(cl, request) == ref_best_decode(cl, request)
            assert queue_per_node(cl) == ref_queue_per_node(cl)
    params = PolicyParams(threshold_tokens=1500, min_pull_tokens=512)
    for name in policy_names():
        assert get_policy(name)(fast, request, params) == get_policy(name)(plain, request, params)
    assert fast == plain


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_index_stays_exact_through_any_update_sequence(data: st.DataObject) -> None:
    index = ClusterIndex()
    current: dict[str, NodeView] = {}
    ids = [f"n-{i:02d}" for i in range(8)]
    for _ in range(data.draw(st.integers(1, 60))):
        node_id = data.draw(st.sampled_from(ids))
        if current and data.draw(st.integers(0, 5)) == 0:
            gone = data.draw(st.sampled_from(sorted(current)))
            index.remove(gone)
            del current[gone]
        else:
            node = data.draw(node_st(node_id))
            index.put(node)
            current[node_id] = node
        kv = data.draw(st.integers(0, 3)) * 100
        request = RequestSpec("r", 0.0, 2000, 64, (), kv)
        fast = ClusterState("c", "pd", index=index)
        plain = ClusterState("c", "pd", tuple(current.values()))
        assert fast.nodes == plain.nodes
        seed = tie_seed(request)
        assert fast.least_work_prefill(seed) == plain.least_work_prefill(seed)
        assert fast.soonest_decode(kv, seed) == ref_best_decode((plain,), request)
        assert fast.prefill_queue() == plain.prefill_queue()
        assert fast.idle_prefill() == plain.idle_prefill()


def test_a_view_over_an_index_refuses_reads_after_a_change() -> None:
    index = ClusterIndex((NodeView("a", "prefill", 0, 0, 0, 1, 0),))
    state = ClusterState("c", "pd", index=index)
    index.put(NodeView("a", "prefill", 1, 500, 1, 1, 0))
    try:
        _ = state.nodes
    except RuntimeError as exc:
        assert "after its nodes changed" in str(exc)
    else:
        raise AssertionError("a stale view was readable")
