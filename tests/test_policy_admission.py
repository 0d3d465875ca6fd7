"""policy.admission: the pure admit-or-shed decision and the per-client token bucket."""

from __future__ import annotations

import itertools

import pytest

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterState, ClusterView, NodeView
from prfaas.policy.admission import (
    SCREEN_NODES,
    AdmissionLimits,
    Bucket,
    admit,
    predicted_ttft,
    recovery_wait_bound,
    shed_unplaced,
    take_tokens,
)
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement

# T(l) = 1 s + 1 ms per token on PD-P.
PARAMS = PolicyParams(
    local_prefill_poly=(1e-3, 1.0),
    local_s_per_token=1e-3,
    remote_prefill_poly=(5e-4, 0.5),
    remote_s_per_token=5e-4,
)


def view(queued_tokens: int, queue_len: int = 0) -> ClusterView:
    """One running request (if any tokens are queued) plus `queue_len` waiting."""
    prefill = NodeView("p0", "prefill", queue_len, queued_tokens, min(queued_tokens, 1), 1, 0)
    decode = NodeView("d0", "decode", 0, 0, 0, 20, 1 << 30)
    return ClusterView(0.0, (ClusterState("pd", "pd", (prefill, decode)),), ())


def request(tokens: int = 1000) -> RequestSpec:
    return RequestSpec("r", 0.0, tokens, 16)


PLACED = Placement("p0", "d0", None, "short", "pd")


def test_predicted_ttft_is_queue_wait_plus_own_prefill() -> None:
    wait, total = predicted_ttft(view(4000, 1), request(1000), PLACED, PARAMS) or (0, 0)
    assert wait == pytest.approx(2 * (1.0 + 2.0))  # two requests of 2000 tokens on average
    assert total == pytest.approx(wait + 2.0)


def test_admits_under_the_slo_and_sheds_over_it_with_a_retry_after() -> None:
    limits = AdmissionLimits(ttft_slo_s=5.0)
    assert admit(view(1000), request(), PLACED, PARAMS, limits, 0).admit
    shed = admit(view(8000), request(), PLACED, PARAMS, limits, 0)  # wait 9 s, TTFT 11 s
    assert not shed.admit and shed.reason == "slo"
    assert shed.retry_after_s == pytest.approx(9.0 + 2.0 - 5.0)  # until the queue drained enough


def test_a_request_over_the_slo_alone_is_refused_even_on_an_idle_node() -> None:
    limits = AdmissionLimits(ttft_slo_s=5.0)
    idle = admit(view(0), request(100_000), PLACED, PARAMS, limits, 0)
    assert not idle.admit and idle.reason == "slo" and idle.retry_after_s == pytest.approx(1.0)
    shed = admit(view(500), request(100_000), PLACED, PARAMS, limits, 0)
    assert not shed.admit and shed.retry_after_s == pytest.approx(1.5)  # the whole wait


def test_queue_bounds_shed_regardless_of_the_slo() -> None:
    assert (
        admit(view(0), request(), PLACED, PARAMS, AdmissionLimits(max_queue=3), 3).reason == "queue"
    )
    shed = admit(view(10, 4), request(), PLACED, PARAMS, AdmissionLimits(max_node_queue=4), 0)
    assert shed.reason == "node_queue"
    assert admit(view(10, 3), request(), PLACED, PARAMS, AdmissionLimits(max_node_queue=4), 0).admit


def test_without_a_cost_model_only_the_queue_bounds_apply() -> None:
    shed = admit(view(10**9), request(), PLACED, PolicyParams(), AdmissionLimits(1.0), 0)
    assert shed.admit


def test_token_bucket_allows_bursts_then_paces() -> None:
    state, wait = take_tokens(None, 0.0, 80, rate=10, burst=100)
    assert wait == 0 and state.tokens == pytest.approx(20)
    state2, wait = take_tokens(state, 1.0, 50, rate=10, burst=100)
    assert wait == 2 and state2.tokens == pytest.approx(30)  # refilled to 30: 20 more = 2 s
    state3, wait = take_tokens(state2, 3.0, 50, rate=10, burst=100)
    assert wait == 0 and state3.tokens == pytest.approx(0)
    # a request larger than the burst passes from a full bucket (it could never fit otherwise)
    _, wait = take_tokens(Bucket(100, 0.0), 0.0, 500, rate=10, burst=100)
    assert wait == 0


def two_clusters(pd_tokens: int, prfaas_tokens: int, queue_len: int = 0) -> ClusterView:
    """A PD-P node and a PrfaaS node with these queued tokens (one running each, if any)."""
    def prefill(name: str, tokens: int) -> NodeView:
        return NodeView(name, "prefill", queue_len, tokens, min(tokens, 1), 1, 0)

    decode = NodeView("d0", "decode", 0, 0, 0, 20, 1 << 30)
    return ClusterView(0.0, (ClusterState("pd", "pd", (prefill("p0", pd_tokens), decode)),
                             ClusterState("prfaas", "prfaas", (prefill("x0", prfaas_tokens),))), ())


def test_sheds_unplaced_only_when_every_node_is_past_the_slo() -> None:
    limits = AdmissionLimits(ttft_slo_s=5.0)
    # PD-P waits 1 + 8 = 9 s, PrfaaS 0.5 + 1 = 1.5 s: a short prompt fits on PrfaaS
    assert shed_unplaced(two_clusters(8000, 2000), PARAMS, limits, 0) is None
    shed = shed_unplaced(two_clusters(8000, 12_000), PARAMS, limits, 0)  # 9 s and 6.5 s
    assert shed is not None and shed.reason == "slo"
    assert shed.retry_after_s == pytest.approx(1.5) and shed.predicted_ttft_s == pytest.approx(6.5)


@pytest.mark.parametrize("tokens", [1, 600, 5000, 40_000])
@pytest.mark.parametrize("prefix", [0, 512, 4096])
def test_what_is_shed_unplaced_admit_sheds_on_any_node_with_any_prefix(tokens: int,
                                                                       prefix: int) -> None:
    """The shortcut is sound: it never refuses what the full decision would admit."""
    cases = [(8000, 12_000, 0, 0), (9000, 9000, 3, 0), (0, 0, 0, 10), (4000, 20_000, 2, 9),
             (3000, 6000, 1, 0)]
    for (pd, rem, queue, waiting), limits in itertools.product(cases, [
            AdmissionLimits(ttft_slo_s=5.0, max_node_queue=3, max_queue=10),
            AdmissionLimits(ttft_slo_s=10.0, max_wait_s=2.5)]):
        v = two_clusters(pd, rem, queue)
        early = shed_unplaced(v, PARAMS, limits, waiting)
        if early is None:
            continue
        for node, cluster in (("p0", "pd"), ("x0", "prfaas")):
            placed = Placement(node, "d0", None, "any", cluster, min(prefix, tokens - 1))
            full = admit(v, request(tokens), placed, PARAMS, limits, waiting)
            assert not full.admit


def test_unplaced_queue_bounds_and_no_cost_model() -> None:
    assert shed_unplaced(two_clusters(0, 0), PARAMS, AdmissionLimits(max_queue=3), 3) is not None
    full = AdmissionLimits(max_node_queue=2)
    assert shed_unplaced(two_clusters(10, 10, 2), PARAMS, full, 0) is not None
    idle = ClusterState("prfaas", "prfaas", (NodeView("x0", "prefill", 0, 0, 0, 1, 0),))
    one_free = ClusterView(0.0, (two_clusters(10, 10, 2).clusters[0], idle), ())
    assert shed_unplaced(one_free, PARAMS, full, 0) is None
    slo = AdmissionLimits(ttft_slo_s=1.0)
    assert shed_unplaced(two_clusters(10**9, 10**9), PolicyParams(), slo, 0) is None
    assert shed_unplaced(ClusterView(0.0, (), ()), PARAMS, slo, 0) is None


def test_a_queue_wait_bound_sheds_before_the_slo_would() -> None:
    """`max_wait_s` caps the backlog a burst leaves (it must clear soon after), below the SLO."""
    limits = AdmissionLimits(ttft_slo_s=10.0, max_wait_s=4.0)
    assert admit(view(2000), request(), PLACED, PARAMS, limits, 0).admit  # wait 3 s
    shed = admit(view(4000, 1), request(), PLACED, PARAMS, limits, 0)  # wait 6 s, TTFT 8 s
    assert not shed.admit and shed.reason == "queue_wait"
    assert shed.retry_after_s == pytest.approx(2.0)
    early = shed_unplaced(two_clusters(8000, 12_000), PARAMS, limits, 0)  # waits 9 s and 6.5 s
    assert early is not None and early.reason == "queue_wait"
    assert shed_unplaced(two_clusters(8000, 2000), PARAMS, limits, 0) is None  # 1.5 s on PrfaaS


def test_the_recovery_bound_leaves_what_the_spare_capacity_drains_in_time() -> None:
    """W seconds of backlog drain in W / (1 - load): the bound is recovery_s x (1 - load)."""
    assert recovery_wait_bound(10.0, 0.6) == pytest.approx(4.0)
    bound = recovery_wait_bound(8.0, 0.25)
    assert bound / (1 - 0.25) == pytest.approx(8.0)
    assert recovery_wait_bound(0.0, 0.6) == 0.0  # off
    assert recovery_wait_bound(10.0, 0.9) < recovery_wait_bound(10.0, 0.5)


def test_past_screen_nodes_only_the_global_queue_is_screened() -> None:
    """The screen runs per request before anything else: in a fleet it must not scan every node
    (issue 15). Every node past the SLO still passes the screen (`admit` sheds it once placed);
    a full global queue is still refused at once."""
    busy = tuple(NodeView(f"p{i}", "prefill", 0, 12_000, 1, 1, 0) for i in range(SCREEN_NODES))
    big = ClusterView(0.0, (ClusterState("pd", "pd", (*busy, NodeView("d0", "decode", 0, 0, 0, 20,
                                                                      1 << 30))),), ())
    slo = AdmissionLimits(ttft_slo_s=5.0, max_queue=10)
    assert shed_unplaced(big, PARAMS, slo, 0) is None
    small = ClusterView(0.0, (ClusterState("pd", "pd", (*busy[:8], big.clusters[0].nodes[-1])),),
                        ())
    assert shed_unplaced(small, PARAMS, slo, 0) is not None  # the same nodes, scanned: shed
    full = shed_unplaced(big, PARAMS, slo, 10)
    assert full is not None and full.reason == "queue"
