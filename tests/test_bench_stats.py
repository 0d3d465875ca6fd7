"""Percentiles match numpy's linear interpolation; the report has its documented keys and values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prfaas.bench.client import RequestResult
from prfaas.bench.stats import SCHEMA, RunInfo, build_report, latency_summary, percentile

floats = st.floats(0, 1e4, allow_nan=False, allow_infinity=False)


@given(values=st.lists(floats, min_size=1, max_size=60), q=st.floats(0, 100))
def test_percentile_matches_numpy(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-9)


def test_percentile_by_hand() -> None:
    values = [4.0, 1.0, 3.0, 2.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 90) == pytest.approx(4.0 + 0.6 * 6.0)
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 10.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_latency_summary() -> None:
    s = latency_summary([0.1, 0.2, 0.3, 0.4])
    assert s is not None
    assert s["mean"] == pytest.approx(0.25) and s["p50"] == pytest.approx(0.25)
    assert s["max"] == 0.4 and s["count"] == 4
    assert latency_summary([]) is None


def ok(i: int, ttft: float, gaps: tuple[float, ...]) -> RequestResult:
    return RequestResult(
        i,
        0.1 * i,
        input_tokens=100,
        ok=True,
        ttft_s=ttft,
        e2e_s=ttft + sum(gaps),
        output_tokens=len(gaps) + 1,
        itl_s=gaps,
    )


def test_report_values() -> None:
    results = [
        ok(0, 0.1, (0.01, 0.03)),  # tpot 0.02
        ok(1, 0.3, (0.04,)),  # tpot 0.04
        RequestResult(2, 0.2, 100, ok=False, error="http_503"),
        RequestResult(3, 0.3, 100, ok=False, error="timeout"),
        RequestResult(4, 0.4, 100, ok=False, error="http_503"),
    ]
    info = RunInfo("http://x", "m", "completions", {"kind": "paper"}, seed=3)
    r = build_report(info, results, duration_s=2.0, send_window_s=1.0)
    assert r["schema"] == SCHEMA and r["seed"] == 3
    assert (r["num_requests"], r["num_ok"], r["num_errors"]) == (5, 2, 3)
    assert r["errors"] == {"http_503": 2, "timeout": 1}
    assert r["offered_rps"] == 5.0 and r["throughput_rps"] == 1.0
    assert r["output_tokens_per_s"] == pytest.approx(5 / 2.0)
    assert r["input_tokens_per_s"] == pytest.approx(200 / 2.0)
    assert r["ttft_s"]["mean"] == pytest.approx(0.2)
    assert r["tpot_s"]["p50"] == pytest.approx(0.03)
    assert r["itl_s"]["count"] == 3 and r["itl_s"]["max"] == pytest.approx(0.04)
    expected = {
        "schema",
        "url",
        "model",
        "endpoint",
        "workload",
        "seed",
        "num_requests",
        "num_ok",
        "num_errors",
        "num_shed",
        "num_429",
        "num_resumed",
        "errors",
        "duration_s",
        "offered_rps",
        "throughput_rps",
        "input_tokens_per_s",
        "output_tokens_per_s",
        "mean_input_tokens",
        "mean_output_tokens",
        "ttft_s",
        "tpot_s",
        "itl_s",
        "e2e_s",
    }
    assert set(r) == expected


def test_report_with_no_success_has_null_latencies() -> None:
    info = RunInfo("http://x", "m", "chat", {"kind": "trace"}, seed=0)
    r = build_report(info, [RequestResult(0, 0.0, 5, ok=False, error="connect")], 1.0, 1.0)
    assert r["ttft_s"] is None and r["throughput_rps"] == 0 and r["errors"] == {"connect": 1}
