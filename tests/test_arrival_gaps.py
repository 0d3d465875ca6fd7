"""The inter-arrival CV both drivers put in the view: unknown, smooth, Poisson, clumped."""

from __future__ import annotations

import random

import pytest

from prfaas.core.arrivals import MIN_GAPS, ArrivalGaps


def _cv(times: list[float], window: int = 128) -> float | None:
    gaps = ArrivalGaps(window)
    for t in times:
        gaps.add(t)
    return gaps.cv()


def test_the_cv_is_unknown_until_enough_gaps() -> None:
    assert _cv([float(i) for i in range(MIN_GAPS)]) is None  # MIN_GAPS arrivals: one gap short
    assert _cv([float(i) for i in range(MIN_GAPS + 1)]) == pytest.approx(0.0, abs=1e-12)


def test_poisson_and_clumped_arrivals_fall_on_either_side_of_the_default_bound() -> None:
    rng = random.Random(7)
    t, poisson = 0.0, []
    for _ in range(600):
        t += rng.expovariate(2.0)
        poisson.append(t)
    assert 0.7 < (_cv(poisson) or 0.0) < 1.4
    clumps = [float(s) for s in range(40) for _ in range(8)]  # 8 requests per timestamp
    assert (_cv(clumps) or 0.0) > 2.0


def test_the_cv_is_scale_free_and_forgets_old_gaps() -> None:
    base = [0.0, 1.0, 1.5, 4.0, 4.2, 7.0] * 10
    times = [sum(base[: i + 1]) for i in range(len(base))]
    a = _cv(times)
    b = _cv([x * 1000.0 for x in times])
    assert a is not None and b == pytest.approx(a, rel=1e-9)
    late = times + [times[-1] + 1.0 + i for i in range(200)]  # then evenly spaced
    assert _cv(late) == pytest.approx(0.0, abs=1e-9)


def test_out_of_order_times_never_give_a_negative_gap() -> None:
    gaps = ArrivalGaps(32)
    for t in [0.0, 1.0, 0.999, 2.0] * 10:
        gaps.add(t)
    cv = gaps.cv()
    assert cv is not None and cv >= 0.0


def test_all_simultaneous_arrivals_are_infinitely_bursty() -> None:
    assert _cv([5.0] * 40) == float("inf")


def test_a_window_below_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ArrivalGaps(1)


def test_the_running_sums_match_an_exact_pass_over_the_window() -> None:
    rng = random.Random(3)
    gaps = ArrivalGaps(64)
    t, times = 0.0, []
    for i in range(5000):  # smooth, Poisson and clumped stretches, several thousand windows
        kind = (i // 700) % 3
        t += 0.5 if kind == 0 else rng.expovariate(1.0) if kind == 1 else rng.choice((0.0, 4.0))
        times.append(t)
        gaps.add(t)
        if i % 97 == 0 and i > 64:
            window = [b - a for a, b in zip(times[-65:-1], times[-64:], strict=True)]
            mean = sum(window) / 64
            sd = (sum((g - mean) ** 2 for g in window) / 64) ** 0.5
            assert gaps.cv() == pytest.approx(sd / mean, rel=1e-9, abs=1e-12)
