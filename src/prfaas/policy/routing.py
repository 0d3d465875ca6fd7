"""The four routing policies: pure functions (view, request, params) -> Placement."""

from __future__ import annotations

from dataclasses import dataclass, replace

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterState, ClusterView
from prfaas.policy.latency import choose_side
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import CachePull, Placement
from prfaas.policy.select import best_decode, best_prefill, queue_per_node


def _place(
    view: ClusterView,
    request: RequestSpec,
    prefill_clusters: tuple[ClusterState, ...],
    why: str,
    *,
    threshold: int = 0,
    planned: int = 0,
) -> Placement:
    """Pick nodes in the given prefill clusters and a decode node; decode stays local to PD-P."""
    chosen = best_prefill(view, prefill_clusters, request)
    if chosen is None:
        return Placement.reject(f"no prefill node accepts work ({why})")
    node, cluster, prefix = chosen
    offloaded = cluster.role == "prfaas"
    decode_clusters = view.by_role("pd") if offloaded else (cluster,)
    decode = best_decode(decode_clusters, request)
    if decode is None:
        return Placement.reject(f"no decode node accepts work ({why})")
    return Placement(
        prefill_node=node.node_id,
        decode_node=decode.node_id,
        cache_pull=None,
        reason=why,
        prefill_cluster=cluster.name,
        prefix_tokens=prefix,
        threshold_tokens=threshold,
        planned_threshold_tokens=planned,
        offloaded=offloaded,
    )


def route_homogeneous(view: ClusterView, request: RequestSpec, params: PolicyParams) -> Placement:
    """All prefill and decode in the local PD cluster(s): prefix-affine, least-work node."""
    return _place(view, request, view.by_role("pd"), "local PD (homogeneous)")


def route_naive(view: ClusterView, request: RequestSpec, params: PolicyParams) -> Placement:
    """Every prefill remote (PrfaaS), every decode local: no threshold, no load balancing across."""
    return _place(view, request, view.by_role("prfaas"), "all prefill remote (naive)")


def _split(
    view: ClusterView, request: RequestSpec, long: bool, t: tuple[int, int], why: str
) -> Placement:
    """Send to PrfaaS if `long`, else PD-P; fall back to the other side if one has no nodes.
    `t`: (effective, planned) threshold, recorded on the placement."""
    remote, local = view.by_role("prfaas"), view.by_role("pd")
    first, second = (remote, local) if long else (local, remote)
    placement = _place(view, request, first, why, threshold=t[0], planned=t[1])
    if placement.rejected:
        placement = _place(view, request, second, why + "; fallback", threshold=t[0], planned=t[1])
    return placement


def _local_prefix(view: ClusterView, role: str) -> tuple[int, str]:
    best, name = 0, ""
    for c in view.clusters:
        if c.role == role:
            tokens = view.prefix_tokens(c.name)
            if tokens > best or not name:
                best, name = tokens, c.name
    return best, name


def route_prfaas_static(view: ClusterView, request: RequestSpec, params: PolicyParams) -> Placement:
    """Fixed t on the incremental length past the PD cluster's prefix; no pulls, no telemetry."""
    t = params.threshold_tokens
    l_pd, _ = _local_prefix(view, "pd")
    inc = request.input_tokens - l_pd
    long = inc > t
    why = f"inc {inc} {'>' if long else '<='} t {t} (static)"
    return _split(view, request, long, (t, t), why)


@dataclass(frozen=True, slots=True)
class Pressure:
    """Short-timescale signals: PrfaaS egress and the prefill queues on both sides."""

    util: float
    drain_s: float
    capacity_gbps: float
    prfaas_queue: float
    pd_queue: float


def assess(view: ClusterView) -> Pressure:
    """Aggregate the links leaving PrfaaS clusters and the per-node prefill queues."""
    remote = {c.name for c in view.clusters if c.role == "prfaas"}
    util = drain = cap = 0.0
    for link in view.links:
        if link.src in remote:
            util = max(util, link.utilisation)
            drain = max(drain, link.drain_s)
            cap += link.capacity_gbps
    return Pressure(
        util=util,
        drain_s=drain,
        capacity_gbps=cap,
        prfaas_queue=queue_per_node(view.by_role("prfaas")),
        pd_queue=queue_per_node(view.by_role("pd")),
    )


def _bandwidth_threshold(params: PolicyParams, capacity_gbps: float) -> int:
    """The planner's best t for the largest tabulated capacity <= the current one."""
    t_bw = params.threshold_by_gbps[0][1]
    for gbps, t_at in params.threshold_by_gbps:
        if gbps <= capacity_gbps + 1e-9:
            t_bw = t_at
    return t_bw


def planned_threshold(params: PolicyParams, capacity_gbps: float) -> int:
    """The threshold search's t for this link capacity: the planner's table entry where it
    raises the base t (the control loop's t, before any per-request trigger scales it)."""
    t = params.threshold_tokens
    if params.threshold_by_gbps:
        t = max(t, _bandwidth_threshold(params, capacity_gbps))
    return t


def effective_threshold(
    params: PolicyParams, p: Pressure, planned: int | None = None
) -> tuple[int, str]:
    """t after the bandwidth re-search and the egress / queue triggers, with a short why.
    `planned`: planned_threshold(params, p.capacity_gbps), when the caller has it already."""
    remote = p.drain_s + p.prfaas_queue * params.remote_service_s
    local = p.pd_queue * params.local_service_s
    gap = remote - local
    slack = params.balance_slack_s
    t = params.threshold_tokens
    why = ""
    if params.threshold_by_gbps and (gap >= -slack or not params.gate_bandwidth_raise):
        # Less link capacity: the planner's t for it, unless PD-P is already the worse side
        # (then moving long requests onto it only relocates the backlog).
        t_bw = planned_threshold(params, p.capacity_gbps) if planned is None else planned
        if t_bw > t:
            t, why = t_bw, f"; link {p.capacity_gbps:.3g}G: t {t_bw}"
    factor = 1.0
    if p.util >= params.raise_util and gap >= -slack:
        # Egress approaching saturation: shift load before a backlog exists.
        factor = 1 + params.egress_raise * min(
            1.0, (p.util - params.raise_util) / max(1 - params.raise_util, 1e-9)
        )
    if gap > slack:
        factor *= 1 + (gap - slack) / params.balance_horizon_s
    elif gap < -slack:
        factor /= 1 + (-gap - slack) / params.balance_horizon_s
    factor = min(params.max_raise, max(1 / params.max_raise, factor))
    if factor == 1.0:
        return t, why
    return int(t * factor), why + f"; wait gap {gap:+.1f}s, u={p.util:.2f}: t x{factor:.2f}"


def _scarce(params: PolicyParams, p: Pressure) -> bool:
    return p.util >= params.scarce_util or p.drain_s >= params.drain_high_s


def route_prfaas(view: ClusterView, request: RequestSpec, params: PolicyParams) -> Placement:
    """Paper §3.4.3: bandwidth- and cache-aware threshold routing with congestion triggers."""
    p = assess(view)
    planned = planned_threshold(params, p.capacity_gbps)
    t, why = effective_threshold(params, p, planned)
    ts = (t, planned)
    scarce = _scarce(params, p)
    l_pd, pd_name = _local_prefix(view, "pd")
    l_remote, remote_name = _local_prefix(view, "prfaas")
    link = (p.util, p.capacity_gbps, p.drain_s)
    if scarce or not remote_name:
        inc = request.input_tokens - l_pd
        long = inc > t
        long, why_lat = choose_side(view, request, params, long, inc, link)
        why += why_lat
        tag = f"inc {inc} {'>' if inc > t else '<='} t {t}; bw scarce u={p.util:.2f}{why}"
        return _split(view, request, long, ts, tag)
    l_prefix = max(l_pd, l_remote)
    inc = request.input_tokens - l_prefix
    long = inc > t
    long, why_lat = choose_side(view, request, params, long, inc, link)
    why += why_lat
    holder = remote_name if l_remote > l_pd else pd_name
    tag = f"inc {inc} {'>' if inc > t else '<='} t {t}; bw ok u={p.util:.2f}{why}"
    placement = _split(view, request, long, ts, tag)
    if placement.rejected or holder == placement.prefill_cluster:
        return placement
    have = view.prefix_tokens(placement.prefill_cluster)
    back = view.link(holder, placement.prefill_cluster)
    if (
        l_prefix - have < params.min_pull_tokens
        or back is None
        or back.utilisation >= params.scarce_util
    ):
        return placement
    pull = CachePull(holder, placement.prefill_cluster, l_prefix, have)
    return replace(
        placement,
        cache_pull=pull,
        prefix_tokens=max(placement.prefix_tokens, min(l_prefix, request.input_tokens - 1)),
        reason=f"{tag}; pull {l_prefix - have} tok {holder}->{placement.prefill_cluster}",
    )
