"""Workload: exact conditional length statistics, the Mooncake trace reader, arrival processes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from prfaas.errors import ConfigError, UsageError
from prfaas.workload import (
    EmpiricalLengths,
    TraceFormatError,
    TruncatedLogNormal,
    gamma_arrivals,
    onoff_arrivals,
    poisson_arrivals,
    read_trace,
    uniform_arrivals,
)

PAPER = TruncatedLogNormal(9.90, 1.00, 128, 131072)


def test_paper_distribution_statistics_match_paper_md() -> None:
    # paper.md §6.1: mean 27,486, median 19,199, P90 62,410, P99 115,417; at t = 19,400:
    # p = 0.4957, l_long = 45,046, l_short = 10,224.
    assert PAPER.mean == pytest.approx(27_486, abs=1)
    assert PAPER.quantile(0.5) == pytest.approx(19_199, abs=1)
    assert PAPER.quantile(0.9) == pytest.approx(62_410, abs=1)
    assert PAPER.quantile(0.99) == pytest.approx(115_417, abs=1)
    assert PAPER.prob_greater(19_400) == pytest.approx(0.4957, abs=5e-5)
    assert PAPER.mean_greater(19_400) == pytest.approx(45_046, abs=1)
    assert PAPER.mean_at_most(19_400) == pytest.approx(10_224, abs=1)


def _quad_stats(mu: float, sigma: float, lo: float, hi: float, t: float) -> tuple[float, float]:
    """P(L > t) and E[L | L > t] by adaptive quadrature of the density in log space."""

    def dens(u: float) -> float:
        return math.exp(-0.5 * ((u - mu) / sigma) ** 2)

    a, b, lt = math.log(lo), math.log(hi), math.log(min(max(t, lo), hi))
    z = integrate.quad(dens, a, b, epsabs=0, epsrel=1e-12)[0]
    tail = integrate.quad(dens, lt, b, epsabs=0, epsrel=1e-12)[0]
    tail_mean = integrate.quad(lambda u: math.exp(u) * dens(u), lt, b, epsabs=0, epsrel=1e-12)[0]
    return tail / z, tail_mean / tail


@settings(max_examples=30, deadline=None)
@given(
    mu=st.floats(7.0, 11.0),
    sigma=st.floats(0.3, 2.0),
    t=st.floats(200.0, 100_000.0),
)
def test_closed_form_equals_quadrature(mu: float, sigma: float, t: float) -> None:
    dist = TruncatedLogNormal(mu, sigma, 128, 131072)
    p, l_long = _quad_stats(mu, sigma, 128, 131072, t)
    assert dist.prob_greater(t) == pytest.approx(p, rel=1e-7, abs=1e-12)
    if p > 1e-9:
        assert dist.mean_greater(t) == pytest.approx(l_long, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(t=st.floats(0.0, 200_000.0))
def test_law_of_total_expectation(t: float) -> None:
    p = PAPER.prob_greater(t)
    long_part = p * PAPER.mean_greater(t) if p > 0 else 0.0
    short_part = (1 - p) * PAPER.mean_at_most(t) if p < 1 else 0.0
    assert long_part + short_part == pytest.approx(PAPER.mean, rel=1e-9)


def test_edges_and_vectorisation() -> None:
    assert PAPER.prob_greater(0) == 1.0 and PAPER.prob_greater(200_000) == 0.0
    assert math.isnan(PAPER.mean_greater(200_000))
    assert math.isnan(PAPER.mean_at_most(10))
    ts = np.array([1_000.0, 19_400.0, 60_000.0])
    assert np.allclose(PAPER.prob_greater(ts), [PAPER.prob_greater(float(t)) for t in ts])
    assert np.all(np.diff(PAPER.mean_greater(ts)) > 0)
    with pytest.raises(ValueError):
        PAPER.quantile(1.5)


def test_invalid_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        TruncatedLogNormal(9.9, 0.0, 128, 131072)
    with pytest.raises(ConfigError):
        TruncatedLogNormal(9.9, 1.0, 500, 100)
    with pytest.raises(ConfigError):
        EmpiricalLengths([])


def test_sampling_is_reproducible_and_in_range() -> None:
    a = PAPER.sample(np.random.default_rng(7), 200_000)
    b = PAPER.sample(np.random.default_rng(7), 200_000)
    assert a.dtype == np.int64 and np.array_equal(a, b)
    assert a.min() >= 128 and a.max() <= 131072
    assert a.mean() == pytest.approx(PAPER.mean, rel=0.01)


def test_empirical_statistics_equal_direct_computation() -> None:
    values = np.random.default_rng(3).integers(1, 50_000, 5_001)
    dist = EmpiricalLengths(values)
    for t in (0.0, 777.0, 12_345.0, 49_999.0, 60_000.0):
        above = values[values > t]
        assert dist.prob_greater(t) == pytest.approx(above.size / values.size)
        if above.size:
            assert dist.mean_greater(t) == pytest.approx(above.mean())
        below = values[values <= t]
        if below.size:
            assert dist.mean_at_most(t) == pytest.approx(below.mean())
    assert dist.quantile(0.5) == np.sort(values)[2500]
    support, probs = dist.discretise()
    assert probs.sum() == pytest.approx(1.0) and np.dot(support, probs) == pytest.approx(dist.mean)
    draw = dist.sample(np.random.default_rng(0), 1000)
    assert set(draw.tolist()) <= set(values.tolist())


def _write(path: Path, rows: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = {"timestamp": 1500, "input_length": 700, "output_length": 20, "hash_ids": [1, 2]}


def test_trace_reader_converts_milliseconds(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [GOOD, {**GOOD, "timestamp": 2500}, ""])
    data = read_trace(path)
    assert [r.timestamp_s for r in data.requests] == [1.5, 2.5]
    assert data.requests[0].hash_ids == (1, 2) and data.skipped_lines == 0
    assert data.input_lengths().tolist() == [700, 700]


@pytest.mark.parametrize(
    "bad",
    [
        "{not json",
        json.dumps({**GOOD, "input_length": "long"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "output_length"}),
        json.dumps({**GOOD, "input_length": -5}),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, bad: str) -> None:
    path = _write(tmp_path / "bad.jsonl", [GOOD, GOOD, bad, GOOD])
    with pytest.raises(TraceFormatError) as info:
        read_trace(path)
    message = str(info.value)
    assert "bad.jsonl:3" in message and "\n" not in message
    assert isinstance(info.value, UsageError)
    skipped = read_trace(path, skip_bad_lines=True)
    assert skipped.skipped_lines == 1 and len(skipped.requests) == 3
    assert skipped.skipped_line_numbers == (3,)


def test_missing_trace_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        read_trace(tmp_path / "nope.jsonl")


@pytest.mark.trace
def test_real_trace_matches_its_readme(conversation_trace: Path) -> None:
    data = read_trace(conversation_trace)
    assert len(data.requests) == 12_031 and data.skipped_lines == 0
    lengths = EmpiricalLengths.from_trace(conversation_trace)
    assert lengths.mean == pytest.approx(12_035, abs=1)
    assert lengths.quantile(0.5) == 6_909
    assert lengths.prob_greater(19_400) == pytest.approx(0.175, abs=5e-4)
    assert data.duration_s == pytest.approx(3_537, abs=1)


def test_uniform_arrivals() -> None:
    times = uniform_arrivals(4.0, 5)
    assert times.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_poisson_and_gamma_rates_and_variability() -> None:
    rng = np.random.default_rng(11)
    poisson = poisson_arrivals(5.0, 100_000, rng)
    gaps = np.diff(poisson)
    assert 1 / gaps.mean() == pytest.approx(5.0, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.03)
    bursty = np.diff(gamma_arrivals(5.0, 3.0, 100_000, rng))
    assert 1 / bursty.mean() == pytest.approx(5.0, rel=0.05)
    assert bursty.std() / bursty.mean() == pytest.approx(3.0, rel=0.1)


def test_onoff_arrivals_keep_the_mean_rate_and_are_silent_when_off() -> None:
    rng = np.random.default_rng(5)
    times = onoff_arrivals(2.0, 50_000, rng, on_s=4.0, off_s=6.0)
    assert np.all(np.diff(times) >= 0)
    assert times.size / times[-1] == pytest.approx(2.0, rel=0.03)
    phase = np.mod(times, 10.0)
    assert np.all(phase <= 4.0 + 1e-9)  # fixed periods: arrivals only in [0, 4) of each 10 s


def test_arrival_inputs_are_validated() -> None:
    with pytest.raises(UsageError):
        uniform_arrivals(0.0, 10)
    with pytest.raises(UsageError):
        poisson_arrivals(1.0, -1, np.random.default_rng(0))
    with pytest.raises(UsageError):
        gamma_arrivals(1.0, 0.0, 10, np.random.default_rng(0))
