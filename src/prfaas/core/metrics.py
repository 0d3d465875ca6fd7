"""Run metrics derived from the lifecycle records plus sampled time series (stdlib only).

Every number in `prfaas simulate --json` comes from here, so the simulator and a live run
report the same quantities the same way. Key names are documented in docs/simulate-json.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prfaas.core.lifecycle import Phase, RequestRecord


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default) of an ascending sequence; NaN if empty."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    pos = (n - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


def distribution(values: Iterable[float]) -> dict[str, float | None]:
    """mean / p50 / p90 / p99 / max of the finite values (None when there are none)."""
    vals = sorted(v for v in values if not math.isnan(v))
    if not vals:
        return {"mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {
        "mean": math.fsum(vals) / len(vals),
        "p50": percentile(vals, 50),
        "p90": percentile(vals, 90),
        "p99": percentile(vals, 99),
        "max": vals[-1],
    }


@dataclass(slots=True)
class RunSeries:
    """Fixed-interval samples: per link the bytes sent and the capacity, per cluster the queue."""

    interval_s: float
    times_s: list[float] = field(default_factory=list)
    link_sent_bytes: dict[str, list[float]] = field(default_factory=dict)
    link_capacity_gbps: dict[str, list[float]] = field(default_factory=dict)
    queue_depth: dict[str, list[int]] = field(default_factory=dict)
    # Requests waiting anywhere before their first token, not being served: prefill queues,
    # cache pulls, KV still on the wire after prefill ended, decode admission.
    waiting: list[int] = field(default_factory=list)
    egress_links: tuple[str, ...] = ()  # links that leave a PrfaaS cluster

    def link_gbps(self, link: str) -> list[float]:
        return [b * 8 / (self.interval_s * 1e9) for b in self.link_sent_bytes.get(link, [])]

    def egress_gbps(self) -> list[float]:
        """Aggregate PrfaaS egress per interval (Gbps)."""
        series = [self.link_gbps(name) for name in self.egress_links]
        return [math.fsum(col) for col in zip(*series, strict=True)] if series else []

    def egress_utilisation(self) -> list[float]:
        """Egress / capacity per interval over the PrfaaS egress links (0 where capacity is 0)."""
        out: list[float] = []
        gbps = self.egress_gbps()
        caps = [self.link_capacity_gbps.get(n, []) for n in self.egress_links]
        for i, g in enumerate(gbps):
            cap = math.fsum(c[i] for c in caps)
            out.append(g / cap if cap > 0 else 0.0)
        return out


@dataclass(frozen=True, slots=True)
class SloSpec:
    """A request meets the SLO when TTFT <= ttft_s and TPOT <= tpot_s."""

    ttft_s: float
    tpot_s: float


def _phase_gap(records: Sequence[RequestRecord], start: Phase, end: Phase) -> list[float]:
    return [r.times[end] - r.times[start] for r in records if not math.isnan(r.times[start])]


def _throughput(done: Sequence[RequestRecord]) -> tuple[float, dict[str, float]]:
    if not done:
        return 0.0, {"requests_per_s": 0.0, "input_tokens_per_s": 0.0, "output_tokens_per_s": 0.0}
    start = min(r.spec.arrival_s for r in done)
    end = max(r.times[Phase.FINISHED] for r in done)
    span = max(end - start, 1e-12)
    return span, {
        "requests_per_s": len(done) / span,
        "input_tokens_per_s": sum(r.spec.input_tokens for r in done) / span,
        "output_tokens_per_s": sum(r.spec.output_tokens for r in done) / span,
    }


def _slo_attainment(done: Sequence[RequestRecord], slo: SloSpec) -> float | None:
    if not done:
        return None
    ok = 0
    for r in done:
        tpot = r.tpot_s
        if r.ttft_s <= slo.ttft_s and (math.isnan(tpot) or tpot <= slo.tpot_s * (1 + 1e-9)):
            ok += 1
    return ok / len(done)


def _hit_rates(done: Sequence[RequestRecord]) -> dict[str, float]:
    hit: dict[str, int] = {}
    total: dict[str, int] = {}
    for r in done:
        c = r.prefill_cluster
        hit[c] = hit.get(c, 0) + r.prefix_tokens
        total[c] = total.get(c, 0) + r.spec.input_tokens
    return {c: hit[c] / total[c] for c in sorted(total) if total[c] > 0}


def _egress(series: RunSeries) -> dict[str, float | None]:
    gbps = sorted(series.egress_gbps())
    util = sorted(series.egress_utilisation())
    if not gbps:
        return {"mean_gbps": None, "p99_gbps": None, "mean_util": None, "p99_util": None}
    return {
        "mean_gbps": math.fsum(gbps) / len(gbps),
        "p99_gbps": percentile(gbps, 99),
        "mean_util": math.fsum(util) / len(util),
        "p99_util": percentile(util, 99),
    }


def _depth(values: Iterable[float]) -> dict[str, float | None]:
    depths = sorted(float(d) for d in values)
    return {
        "mean": math.fsum(depths) / len(depths) if depths else None,
        "p99": percentile(depths, 99) if depths else None,
        "max": depths[-1] if depths else None,
    }


def _queues(series: RunSeries) -> dict[str, dict[str, float | None]]:
    return {cluster: _depth(series.queue_depth[cluster]) for cluster in sorted(series.queue_depth)}


_PHASE_GAPS: tuple[tuple[str, Phase, Phase], ...] = (
    ("cache_pull", Phase.CACHE_PULL, Phase.PREFILL_QUEUED),
    ("prefill_wait", Phase.PREFILL_QUEUED, Phase.PREFILLING),
    ("prefill", Phase.PREFILLING, Phase.TRANSFERRING),
    ("transfer_tail", Phase.TRANSFERRING, Phase.DECODE_QUEUED),
    ("decode_wait", Phase.DECODE_QUEUED, Phase.DECODING),
)


def _phases(done: Sequence[RequestRecord]) -> dict[str, dict[str, float | None]]:
    """Time spent in each phase (seconds), over the requests that went through it."""
    return {name: distribution(_phase_gap(done, a, b)) for name, a, b in _PHASE_GAPS}


def summarise(
    records: Sequence[RequestRecord], series: RunSeries, slo: SloSpec
) -> dict[str, object]:
    """The metrics block of `prfaas simulate --json` (stable keys; see docs/simulate-json.md)."""
    done = [r for r in records if r.phase == Phase.FINISHED]
    rejected = sum(1 for r in records if r.phase == Phase.REJECTED)
    span, throughput = _throughput(done)
    return {
        "requests": {
            "total": len(records),
            "finished": len(done),
            "rejected": rejected,
            "unfinished": len(records) - len(done) - rejected,
        },
        "duration_s": span if done else 0.0,
        "throughput": throughput,
        "ttft_s": distribution(r.ttft_s for r in done),
        "tpot_s": distribution(r.tpot_s for r in done),
        "slo": {
            "ttft_s": slo.ttft_s,
            "tpot_s": slo.tpot_s,
            "attainment": _slo_attainment(done, slo),
        },
        "phases_s": _phases(done),
        "offload_fraction": (sum(1 for r in done if r.offloaded) / len(done)) if done else None,
        "egress": _egress(series),
        "queue_depth": _queues(series),
        "waiting": _depth(series.waiting),
        "prefix_hit_rate": _hit_rates(done),
        "prefix_hit_rate_all": (
            sum(r.prefix_tokens for r in done) / sum(r.spec.input_tokens for r in done)
            if done
            else None
        ),
        "cross_cluster_cache_bytes": sum(r.pulled_bytes for r in records),
        "cache_pulls": sum(1 for r in records if r.pulled_bytes > 0),
    }


def window(
    records: Sequence[RequestRecord], series: RunSeries, start_s: float, end_s: float
) -> tuple[list[RequestRecord], RunSeries]:
    """Requests that arrived in [start_s, end_s) and the samples taken in that interval."""
    recs = [r for r in records if start_s <= r.spec.arrival_s < end_s]
    keep = [i for i, t in enumerate(series.times_s) if start_s <= t < end_s]
    out = RunSeries(interval_s=series.interval_s, egress_links=series.egress_links)
    out.times_s = [series.times_s[i] for i in keep]
    out.link_sent_bytes = {k: [v[i] for i in keep] for k, v in series.link_sent_bytes.items()}
    out.link_capacity_gbps = {k: [v[i] for i in keep] for k, v in series.link_capacity_gbps.items()}
    out.queue_depth = {k: [v[i] for i in keep] for k, v in series.queue_depth.items()}
    out.waiting = [series.waiting[i] for i in keep if i < len(series.waiting)]
    return recs, out
