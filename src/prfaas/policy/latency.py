"""Latency-aware side choice (beyond the paper): expected completion time on each side."""

from __future__ import annotations

from dataclasses import dataclass

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterState, ClusterView
from prfaas.policy.params import PolicyParams
from prfaas.policy.select import best_prefill


@dataclass(frozen=True, slots=True)
class SideEstimate:
    """Expected seconds until this request's KV sits on a decode node, via one side."""

    wait_s: float  # queue wait on the side's least-loaded prefill node
    total_s: float  # wait + prefill + transfer time not hidden behind prefill
    idle: int = 0  # prefill nodes with nothing queued
    nodes: int = 0  # prefill nodes accepting work


def polyval(coeffs: tuple[float, ...], x: float) -> float:
    out = 0.0
    for c in coeffs:
        out = out * x + c
    return out


def _queues(clusters: tuple[ClusterState, ...]) -> tuple[int | None, int, int]:
    """(least queued tokens, idle nodes, nodes) over the active prefill nodes.

    Per-cluster answers (O(log n) over the cluster's index, a scan without one): the cost of a
    decision does not grow with the fleet.
    """
    best: int | None = None
    idle = nodes = 0
    for c in clusters:
        head = c.least_work_prefill()
        if head is not None and (best is None or head.queued_tokens < best):
            best = head.queued_tokens
        idle += c.idle_prefill()
        nodes += c.prefill_queue()[1]
    return best, idle, nodes


def estimate(
    view: ClusterView,
    clusters: tuple[ClusterState, ...],
    request: RequestSpec,
    cost: tuple[tuple[float, ...], float],
    transfer_s: float,
) -> SideEstimate | None:
    """On the node the side's own choice (best_prefill) would take; None when it has none.
    `cost` is the side's T(l) polynomial and seconds per queued token."""
    chosen = best_prefill(view, clusters, request)
    if chosen is None:
        return None
    node, _, prefix = chosen
    poly, s_per_token = cost
    _, idle, nodes = _queues(clusters)
    wait = node.queued_tokens * s_per_token
    prefill = max(polyval(poly, float(request.input_tokens - prefix)), 0.0)
    # KV streams layer by layer while prefill runs: only what outlasts it adds to the wait.
    total = wait + prefill + max(transfer_s - prefill, 0.0)
    return SideEstimate(wait, total, idle, nodes)


def transfer_s(params: PolicyParams, tokens: int, capacity_gbps: float, drain_s: float) -> float:
    """Seconds to ship `tokens` of KV plus the state over the PrfaaS egress, after its backlog."""
    if capacity_gbps <= 0:
        return float("inf")
    size = params.kv_state_bytes + params.kv_bytes_per_token * max(tokens, 0)
    return drain_s + size * 8 / (capacity_gbps * 1e9)


def prefer_other_side(
    params: PolicyParams,
    long: bool,
    remote: SideEstimate | None,
    local: SideEstimate | None,
    util: float,
    arrival_cv: float | None = None,
) -> bool:
    """Whether to override t's choice (`long`: remote) for a smaller completion time."""
    if not params.latency_routing or remote is None or local is None or util >= params.raise_util:
        return False
    mine, other = (remote, local) if long else (local, remote)
    if other.total_s >= mine.total_s or other.wait_s > params.latency_slack_s or not other.idle:
        return False
    # Slack: under bursty arrivals the other side keeps idle nodes in reserve for the requests
    # t sends it (without one, short requests on an idle PrfaaS cluster delay the long ones that
    # come in the same clump: the trace's P99 rises); smoother arrivals need no reserve.
    bursty = arrival_cv is None or arrival_cv > params.latency_reserve_cv
    reserve = params.latency_reserve_nodes if bursty else 0
    return other.idle > min(reserve, other.nodes - 1)


def enabled(params: PolicyParams) -> bool:
    return params.latency_routing and bool(params.remote_prefill_poly and params.local_prefill_poly)


def choose_side(
    view: ClusterView,
    request: RequestSpec,
    params: PolicyParams,
    long: bool,
    inc: int,
    link: tuple[float, float, float],
) -> tuple[bool, str]:
    """t's choice (`long`: PrfaaS), flipped when the other side completes sooner and has slack.
    `link` is the PrfaaS egress (utilisation, capacity Gbit/s, backlog drain seconds)."""
    if not enabled(params):
        return long, ""
    util, capacity, drain = link
    have_pd = view_prefix(view, "pd")
    remote = estimate(
        view,
        view.by_role("prfaas"),
        request,
        (params.remote_prefill_poly, params.remote_s_per_token),
        transfer_s(params, request.input_tokens - have_pd, capacity, drain),
    )
    local = estimate(
        view,
        view.by_role("pd"),
        request,
        (params.local_prefill_poly, params.local_s_per_token),
        0.0,
    )
    if not prefer_other_side(params, long, remote, local, util, view.arrival_cv):
        return long, ""
    assert remote is not None and local is not None
    return not long, f"; latency: remote {remote.total_s:.2f}s vs local {local.total_s:.2f}s"


def view_prefix(view: ClusterView, role: str) -> int:
    return max((view.prefix_tokens(c.name) for c in view.clusters if c.role == role), default=0)
