"""Prometheus metrics of a deployment in a dedicated registry; the server and router update them.

Who updates what:
- the HTTP edge (this package) records `requests_total`, TTFT, TPOT and end-to-end latency, since
  it sees each request from arrival to the last byte; the router must not record those again;
- the router records placement: per-node queues and roles, the offload fraction, the threshold t,
  link egress and capacity, KV transfer latency/bytes and prefix-cache hits.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# TTFT spans a cached short prompt (ms) to a 128K-token prefill behind a queue (minutes).
TTFT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
TPOT_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2)
E2E_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640)
TRANSFER_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class ServerMetrics:
    """All metrics of one deployment; `exposition()` renders them for GET /metrics."""

    def __init__(self, namespace: str = "prfaas") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        kw: dict[str, Any] = {"namespace": namespace, "registry": self.registry}
        self._init_edge(kw)
        self._init_router(kw)
        self._prefix_totals: dict[str, tuple[float, float]] = {}

    def _init_edge(self, kw: dict[str, Any]) -> None:
        h, g, c = Histogram, Gauge, Counter
        self.requests = c(
            "requests", "HTTP requests by endpoint and status", ["endpoint", "status"], **kw
        )
        self.in_flight = g("requests_in_flight", "requests being served", **kw)
        self.ttft = h(
            "ttft_seconds", "time to first token (server edge)", buckets=TTFT_BUCKETS_S, **kw
        )
        self.tpot = h(
            "tpot_seconds", "mean time per output token of a request", buckets=TPOT_BUCKETS_S, **kw
        )
        self.e2e = h(
            "e2e_seconds", "request latency from arrival to last token",
            buckets=E2E_BUCKETS_S, **kw
        )

    def _init_router(self, kw: dict[str, Any]) -> None:
        h, g, c = Histogram, Gauge, Counter
        self.queue_requests = g(
            "queue_requests", "queued requests per node", ["cluster", "node"], **kw
        )
        self.queue_tokens = g(
            "queue_tokens", "queued prompt tokens per node", ["cluster", "node"], **kw
        )
        self.node_role = g(
            "node_role", "1 for the node's current role (0 for every role while it is down)",
            ["cluster", "node", "role"], **kw
        )
        self.node_up = g(
            "node_up", "1 while the node is registered in etcd and reachable, 0 once marked dead",
            ["cluster", "node", "role"], **kw
        )
        self.offload_fraction = g(
            "offload_fraction", "fraction of recent requests prefilled on the PrfaaS cluster", **kw
        )
        self.threshold = g(
            "threshold_tokens", "routing threshold t on incremental prompt length", **kw
        )
        self.egress = g("egress_gbps", "measured egress on a link (Gbit/s)", ["link"], **kw)
        self.capacity = g(
            "link_capacity_gbps", "configured link capacity (Gbit/s)", ["link"], **kw
        )
        self.transfer = h(
            "transfer_seconds", "KV transfer latency", ["link"], buckets=TRANSFER_BUCKETS_S, **kw
        )
        self.transfer_bytes = c("transfer_bytes", "KV bytes sent", ["link"], **kw)
        self.control = g(
            "control_estimate",
            "the control loop's online estimates (link Gbit/s, prefill fit scale/offset s, "
            "decode step s) and their sample counts",
            ["name"],
            **kw,
        )
        self.held_tokens = c(
            "kv_held_tokens",
            "prompt tokens whose KV was not sent: the decode cluster held the prefix",
            ["src_cluster"],
            **kw,
        )
        self.prefix_tokens = c(
            "prefix_tokens", "prompt tokens by prefix-cache outcome", ["cluster", "outcome"], **kw
        )
        self.prefix_hit_ratio = g(
            "prefix_hit_ratio", "cumulative prefix-cache token hit ratio", ["cluster"], **kw
        )
        self.routed = c(
            "routed_requests", "routing decisions by prefill cluster", ["cluster"], **kw
        )
        self._init_reliability(kw)

    def _init_reliability(self, kw: dict[str, Any]) -> None:
        c = Counter
        self.reliability = {
            "recovery": c(
                "decode_recoveries", "streams moved to another decode node (re-prefilled)", **kw
            ),
            "resumed": c(
                "resumed_streams", "client requests resuming a cut stream (resume_token_ids)", **kw
            ),
            "retry": c("retries", "prefill attempts retried on another node", ["stage"], **kw),
            "shed": c("shed", "requests refused with 429 by admission control", ["reason"], **kw),
            "cancelled": c(
                "cancelled", "requests cancelled (client gone or timed out)", ["stage"], **kw
            ),
        }

    # -- HTTP edge ------------------------------------------------------------------------------
    def count_request(self, endpoint: str, status: str) -> None:
        self.requests.labels(endpoint=endpoint, status=status).inc()

    def observe_ttft(self, seconds: float) -> None:
        self.ttft.observe(seconds)

    def observe_tpot(self, seconds: float) -> None:
        self.tpot.observe(seconds)

    def observe_e2e(self, seconds: float) -> None:
        self.e2e.observe(seconds)

    # -- router ---------------------------------------------------------------------------------
    def set_queue(self, cluster: str, node: str, requests: int, tokens: int = 0) -> None:
        self.queue_requests.labels(cluster=cluster, node=node).set(requests)
        self.queue_tokens.labels(cluster=cluster, node=node).set(tokens)

    def set_node_role(
        self, cluster: str, node: str, role: str, roles: tuple[str, ...] = ("prefill", "decode"),
        up: bool = True,
    ) -> None:
        """A dead node leaves the role gauges (all 0) and shows node_up 0 under its last role."""
        for r in {*roles, role}:
            value = 1.0 if r == role and up else 0.0
            self.node_role.labels(cluster=cluster, node=node, role=r).set(value)
            self.node_up.labels(cluster=cluster, node=node, role=r).set(value)

    def set_offload_fraction(self, fraction: float) -> None:
        self.offload_fraction.set(fraction)

    def set_threshold(self, tokens: float) -> None:
        self.threshold.set(tokens)

    def set_link(self, link: str, egress_gbps: float, capacity_gbps: float | None = None) -> None:
        self.egress.labels(link=link).set(egress_gbps)
        if capacity_gbps is not None:
            self.capacity.labels(link=link).set(capacity_gbps)

    def observe_transfer(self, link: str, seconds: float, num_bytes: int) -> None:
        self.transfer.labels(link=link).observe(seconds)
        self.transfer_bytes.labels(link=link).inc(num_bytes)

    def set_control(self, estimates: dict[str, Any]) -> None:
        for name, value in estimates.items():
            if isinstance(value, bool | int | float):
                self.control.labels(name=name).set(float(value))

    def count_held(self, src_cluster: str, tokens: int) -> None:
        self.held_tokens.labels(src_cluster=src_cluster).inc(tokens)

    def observe_prefix(self, cluster: str, hit_tokens: int, prompt_tokens: int) -> None:
        """One request's prefix match on `cluster`: `hit_tokens` of `prompt_tokens` were cached."""
        miss = max(prompt_tokens - hit_tokens, 0)
        self.prefix_tokens.labels(cluster=cluster, outcome="hit").inc(hit_tokens)
        self.prefix_tokens.labels(cluster=cluster, outcome="miss").inc(miss)
        hits, total = self._prefix_totals.get(cluster, (0.0, 0.0))
        hits, total = hits + hit_tokens, total + hit_tokens + miss
        self._prefix_totals[cluster] = (hits, total)
        self.prefix_hit_ratio.labels(cluster=cluster).set(hits / total if total else 0.0)

    def count_route(self, prefill_cluster: str) -> None:
        self.routed.labels(cluster=prefill_cluster).inc()

    def count_reliability(self, what: str, label: str = "") -> None:
        """recovery, resumed (no label), retry{stage}, shed{reason}, cancelled{stage}."""
        counter = self.reliability[what]
        if label:
            counter.labels(label).inc()
        else:
            counter.inc()

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of the text exposition format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
