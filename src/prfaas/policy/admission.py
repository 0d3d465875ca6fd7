"""Admission control: admit a placed request or shed it (429 + Retry-After), from the view alone.

Shedding is decided once the policy has placed the request, on the node it chose: a bounded
global queue (requests waiting for their first token), a bounded queue per prefill node, and the
TTFT SLO against the prefill cost model the latency-aware policy already uses: the node's queue
of n requests and Q tokens waits n x T(Q / n) (T convex: the least that queue can take), then the
request's own T(l) on its uncached tokens. A request that cannot meet the
SLO even on an idle node (a prompt near the context window) is refused too: the deployment says
it cannot serve it within its SLO (raise `ttft_slo_s`, or cap `max_prompt_tokens`); a client
timeout shorter than its prefill would lose it anyway. Per-client token rates use `take_tokens`.
All times are modelled seconds; the router converts them to wall-clock ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prfaas.core.request import RequestSpec
from prfaas.core.view import ClusterView
from prfaas.policy.latency import polyval
from prfaas.policy.params import PolicyParams
from prfaas.policy.placement import Placement

MIN_RETRY_S = 1.0
SCREEN_NODES = 256  # the pre-placement screen's per-node rules stop here (O(n) per request)


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """0 turns a bound off."""

    ttft_slo_s: float = 0.0  # predicted TTFT above this is shed (modelled seconds)
    max_node_queue: int = 0  # requests waiting on one prefill node
    max_queue: int = 0  # requests waiting for their first token, over the whole router
    max_wait_s: float = 0.0  # predicted queue wait above this is shed (modelled seconds)


@dataclass(frozen=True, slots=True)
class Admission:
    admit: bool
    reason: str = ""  # why it was shed: queue | node_queue | queue_wait | slo
    retry_after_s: float = 0.0  # when a retry may be admitted (modelled seconds)
    predicted_ttft_s: float = 0.0


def recovery_wait_bound(recovery_s: float, load: float) -> float:
    """The predicted queue wait to admit at most so that a burst's backlog clears within
    `recovery_s` of its end while the steady `load` (0 <= load < 1) goes on: the spare capacity
    1 - load drains W seconds of backlog in W / (1 - load), so W = recovery_s (1 - load).
    0.0 (no bound) when `recovery_s` is 0."""
    return recovery_s * (1.0 - load) if recovery_s > 0 else 0.0


def predicted_ttft(
    view: ClusterView, request: RequestSpec, placement: Placement, params: PolicyParams
) -> tuple[float, float] | None:
    """(queue wait, wait + prefill) on the chosen prefill node; None without a cost model."""
    cluster = view.node_cluster(placement.prefill_node)
    node = cluster.node(placement.prefill_node)
    poly = params.remote_prefill_poly if cluster.role == "prfaas" else params.local_prefill_poly
    if node is None or not poly:
        return None
    wait = queue_wait(poly, node.queue_len + node.running, node.queued_tokens)
    incremental = max(request.input_tokens - placement.prefix_tokens, 1)
    return wait, wait + max(polyval(poly, float(incremental)), 0.0)


def queue_wait(poly: tuple[float, ...], requests: int, tokens: int) -> float:
    """Seconds to clear `requests` holding `tokens` in all: requests x T(tokens / requests)."""
    if requests <= 0 or tokens <= 0:
        return 0.0
    return requests * max(polyval(poly, tokens / requests), 0.0)


def admit(
    view: ClusterView,
    request: RequestSpec,
    placement: Placement,
    params: PolicyParams,
    limits: AdmissionLimits,
    waiting: int,
) -> Admission:
    """Admit, or shed with a reason and a Retry-After; `waiting`: requests not yet at their first
    token (the router's count)."""
    estimate = predicted_ttft(view, request, placement, params)
    wait, total = estimate if estimate is not None else (0.0, 0.0)
    if limits.max_queue and waiting >= limits.max_queue:
        return Admission(False, "queue", max(wait, MIN_RETRY_S), total)
    node = view.node_cluster(placement.prefill_node).node(placement.prefill_node)
    if limits.max_node_queue and node is not None and node.queue_len >= limits.max_node_queue:
        return Admission(False, "node_queue", max(wait, MIN_RETRY_S), total)
    if limits.max_wait_s and wait > limits.max_wait_s:
        return Admission(False, "queue_wait", max(wait - limits.max_wait_s, MIN_RETRY_S), total)
    if limits.ttft_slo_s and total > limits.ttft_slo_s:
        # the queue must drain by the excess (or entirely, for a request over the SLO alone)
        retry = min(total - limits.ttft_slo_s, wait)
        return Admission(False, "slo", max(retry, MIN_RETRY_S), total)
    return Admission(True, predicted_ttft_s=total)


def shed_unplaced(
    view: ClusterView, params: PolicyParams, limits: AdmissionLimits, waiting: int
) -> Admission | None:
    """Shed before the request is tokenized, hashed and placed, when `admit` would shed it on any
    node the policy could pick with any prefix match: the global queue is full, every prefill
    node's queue is full, or even the least predicted queue wait already exceeds the wait bound
    or the SLO (the request's own prefill only adds to it). None: place it, then `admit`.
    Past SCREEN_NODES nodes only the global queue is screened: the per-node rules would scan
    every node per request (`admit` still applies them to the placed one)."""
    if sum(c.size() for c in view.clusters) > SCREEN_NODES:
        full = limits.max_queue and waiting >= limits.max_queue
        return Admission(False, "queue", MIN_RETRY_S, 0.0) if full else None
    loads = [
        (node, params.remote_prefill_poly if c.role == "prfaas" else params.local_prefill_poly)
        for c in view.clusters
        for node in c.nodes
        if node.role == "prefill"  # draining ones too: more candidates never shed more
    ]
    if not loads:
        return None  # the policy reports that there is no capacity
    known = all(poly for _, poly in loads)  # without a cost model `admit` predicts nothing
    best = min(queue_wait(p, n.queue_len + n.running, n.queued_tokens) for n, p in loads) \
        if known else 0.0
    if limits.max_queue and waiting >= limits.max_queue:
        return Admission(False, "queue", max(best, MIN_RETRY_S), best)
    if limits.max_node_queue and all(n.queue_len >= limits.max_node_queue for n, _ in loads):
        return Admission(False, "node_queue", max(best, MIN_RETRY_S), best)
    if known and limits.max_wait_s and best > limits.max_wait_s:
        return Admission(False, "queue_wait", max(best - limits.max_wait_s, MIN_RETRY_S), best)
    if known and limits.ttft_slo_s and best > limits.ttft_slo_s:
        return Admission(False, "slo", max(best - limits.ttft_slo_s, MIN_RETRY_S), best)
    return None


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket's state: tokens left at `time_s`."""

    tokens: float
    time_s: float


def take_tokens(
    bucket: Bucket | None, now_s: float, cost: float, rate: float, burst: float
) -> tuple[Bucket, float]:
    """Spend `cost` tokens from a bucket refilled at `rate`/s up to `burst`: (new state, 0.0) when
    allowed, else (state unchanged but refilled, seconds until it would be). A request costlier
    than the whole burst is allowed from a full bucket (it would never fit otherwise)."""
    level = burst if bucket is None else min(burst, bucket.tokens + (now_s - bucket.time_s) * rate)
    if level >= min(cost, burst):
        return Bucket(level - cost, now_s), 0.0
    return Bucket(level, now_s), math.ceil((min(cost, burst) - level) / rate)
