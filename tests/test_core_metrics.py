"""Metrics from lifecycle records and sampled series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prfaas.core.lifecycle import Phase, RequestRecord
from prfaas.core.metrics import RunSeries, SloSpec, distribution, percentile, summarise
from prfaas.core.request import RequestSpec


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert percentile(sorted(values), q) == pytest.approx(np.percentile(values, q), abs=1e-6)


def test_distribution_ignores_nan_and_handles_empty() -> None:
    d = distribution([1.0, math.nan, 3.0])
    assert d["mean"] == 2.0 and d["max"] == 3.0
    assert distribution([])["p90"] is None


def _done(
    i: int, arrival: float, ttft: float, *, cluster: str, prefix: int, offloaded: bool
) -> RequestRecord:
    rec = RequestRecord(RequestSpec(f"r{i}", arrival, 1000, 11))
    for phase, t in [
        (Phase.ROUTED, 0.0),
        (Phase.PREFILL_QUEUED, 0.0),
        (Phase.PREFILLING, 0.1),
        (Phase.TRANSFERRING, ttft * 0.9),
        (Phase.DECODE_QUEUED, ttft),
        (Phase.DECODING, ttft),
        (Phase.FINISHED, ttft + 1.0),
    ]:
        rec.advance(phase, arrival + t)
    rec.prefill_cluster = cluster
    rec.prefix_tokens = prefix
    rec.offloaded = offloaded
    return rec


def test_summarise_counts_everything_and_derives_rates() -> None:
    recs = [
        _done(0, 0.0, 1.0, cluster="pd", prefix=500, offloaded=False),
        _done(1, 1.0, 3.0, cluster="prfaas", prefix=0, offloaded=True),
        _done(2, 2.0, 20.0, cluster="pd", prefix=0, offloaded=False),
    ]
    rejected = RequestRecord(RequestSpec("x", 3.0, 10, 2))
    rejected.advance(Phase.REJECTED, 3.0)
    stuck = RequestRecord(RequestSpec("y", 3.0, 10, 2))
    series = RunSeries(interval_s=1.0, egress_links=("prfaas->pd",))
    series.times_s = [0.0, 1.0]
    series.link_sent_bytes = {"prfaas->pd": [1.25e9, 0.0]}  # 10 Gbit in 1 s
    series.link_capacity_gbps = {"prfaas->pd": [100.0, 100.0]}
    series.queue_depth = {"pd": [0, 4]}
    series.waiting = [1, 5]
    m = summarise([*recs, rejected, stuck], series, SloSpec(ttft_s=5.0, tpot_s=0.1))
    assert m["requests"] == {"total": 5, "finished": 3, "rejected": 1, "unfinished": 1}
    assert m["ttft_s"]["mean"] == pytest.approx(8.0)
    assert m["slo"]["attainment"] == pytest.approx(2 / 3)
    assert m["offload_fraction"] == pytest.approx(1 / 3)
    assert m["prefix_hit_rate"] == {"pd": 0.25, "prfaas": 0.0}
    assert m["egress"]["mean_gbps"] == pytest.approx(5.0)
    assert m["egress"]["p99_util"] == pytest.approx(0.099)
    assert m["queue_depth"]["pd"]["max"] == 4.0
    assert m["waiting"]["mean"] == 3.0
    assert m["throughput"]["requests_per_s"] == pytest.approx(3 / 23.0)
