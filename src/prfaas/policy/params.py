"""Policy parameters: frozen, with documented defaults (the paper gives no numbers for these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """Knobs of the routing policies. Policies ignore the knobs they do not use.

    threshold_tokens: t on the incremental (uncached) length; the planner's optimum by default.
    threshold_by_gbps: (capacity_gbps, t) pairs, ascending in capacity, from re-running the
        planner's t search at each link capacity (paper §3.4.3: on a policy update the scheduler
        "profiles current compute capacity and egress bandwidth" and re-searches t). `prfaas` uses
        the entry for the largest capacity <= the link's current capacity.
    scarce_util / drain_high_s: PrfaaS egress utilisation, or in-flight backlog in seconds to
        drain at the current capacity, at or above which bandwidth counts as scarce: only
        cluster-local caches are used and no cross-cluster cache pull is issued.
    raise_util / egress_raise: from this egress utilisation on, t rises (by up to egress_raise,
        at full utilisation) before the link saturates, unless PD-P is the more backed-up side.
    remote_service_s / local_service_s: typical prefill time of a request on a PrfaaS node and on a
        PD-P node (the planner's T(l_long) and T(l_short)); they turn queue lengths into waits.
    balance_slack_s / balance_horizon_s: the queue trigger. The expected extra delay of the remote
        path (link backlog + PrfaaS queue wait) is compared with the local one (PD-P queue wait);
        a gap beyond the slack scales t by 1 + gap / horizon (up, toward PD-P, when the remote
        path is worse; down when PD-P is worse), so a surge on one side moves the marginal
        requests to the other without overloading it.
    gate_bandwidth_raise: skip the threshold_by_gbps raise while PD-P is the more backed-up side.
    max_raise: bound on that scaling (t stays within [t / max_raise, t * max_raise]).
    min_pull_tokens: smallest prefix gain that justifies a cross-cluster cache pull.
    remote_prefill_poly / local_prefill_poly: T(l) of a PrfaaS / PD-P node as polynomial
        coefficients (numpy.polyval order, seconds); remote_s_per_token / local_s_per_token turn
        queued tokens into a wait; kv_state_bytes / kv_bytes_per_token: S_kv(l). Set by the
        control core from the planner's profiles; empty polynomials turn latency routing off.
    latency_routing / latency_slack_s: beyond the paper, when the side t picks is not the one
        with the smaller expected completion time (queue wait + prefill + transfer not hidden by
        it), the request goes to the other side if that side's queue wait is at most
        latency_slack_s, more than latency_reserve_nodes of its prefill nodes are idle (kept for
        the requests t sends there) and egress is below raise_util: spare capacity is used at
        low load, and t governs once queues build near saturation.
    latency_reserve_cv: the idle-node reserve holds only while recent arrivals are burstier than
        this inter-arrival CV (Poisson: 1; the view's arrival_cv, unknown counts as bursty).
        Smoother arrivals rarely bring two long requests at once, so the last idle node serves
        short ones too (docs/results.md 7.3 measures both sides of this).
    """

    threshold_tokens: int = 19_400
    threshold_by_gbps: tuple[tuple[float, int], ...] = ()
    scarce_util: float = 0.6
    raise_util: float = 0.9
    egress_raise: float = 0.1
    drain_high_s: float = 0.5
    remote_service_s: float = 2.5
    local_service_s: float = 1.8
    balance_slack_s: float = 1.0
    balance_horizon_s: float = 5.0
    max_raise: float = 4.0
    gate_bandwidth_raise: bool = True
    min_pull_tokens: int = 2048
    remote_prefill_poly: tuple[float, ...] = ()
    local_prefill_poly: tuple[float, ...] = ()
    remote_s_per_token: float = 0.0
    local_s_per_token: float = 0.0
    kv_state_bytes: float = 0.0
    kv_bytes_per_token: float = 0.0
    latency_routing: bool = True
    latency_slack_s: float = 0.0
    latency_reserve_nodes: int = 1
    latency_reserve_cv: float = 1.5

    def __post_init__(self) -> None:
        if self.threshold_tokens < 0:
            raise ValueError("threshold_tokens must be >= 0")
        if not 0 < self.scarce_util <= self.raise_util:
            raise ValueError("need 0 < scarce_util <= raise_util")
        if self.drain_high_s <= 0 or self.balance_horizon_s <= 0 or self.max_raise < 1:
            raise ValueError("drain_high_s and balance_horizon_s must be > 0, max_raise >= 1")
        if self.remote_service_s < 0 or self.local_service_s < 0 or self.balance_slack_s < 0:
            raise ValueError("service times and balance_slack_s must be >= 0")
        latency = (self.latency_slack_s, self.remote_s_per_token, self.local_s_per_token)
        if self.latency_reserve_nodes < 0 or min(*latency, self.latency_reserve_cv) < 0:
            raise ValueError(
                "latency_slack_s, latency_reserve_nodes, latency_reserve_cv, per-token times: >= 0"
            )
        caps = [c for c, _ in self.threshold_by_gbps]
        if caps != sorted(caps):
            raise ValueError("threshold_by_gbps must be ascending in capacity")
