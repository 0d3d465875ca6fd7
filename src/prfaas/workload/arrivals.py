"""Arrival processes: absolute arrival times in seconds (uniform, Poisson, bursty on/off, gamma)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from prfaas.errors import UsageError

FloatArray = npt.NDArray[np.float64]


def _check(rate: float, n: int) -> None:
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise UsageError(f"arrival rate must be a finite number > 0 req/s, got {rate!r}")
    if int(n) != n or n < 0:
        raise UsageError(f"number of arrivals must be an integer >= 0, got {n!r}")


def uniform_arrivals(rate: float, n: int) -> FloatArray:
    """Deterministic arrivals every 1/rate s from 0 (the paper's 'uniform at rate Λ')."""
    _check(rate, n)
    return np.arange(int(n), dtype=np.float64) / float(rate)


def poisson_arrivals(rate: float, n: int, rng: np.random.Generator) -> FloatArray:
    """Poisson process: i.i.d. exponential gaps with mean 1/rate."""
    _check(rate, n)
    return np.cumsum(rng.exponential(1.0 / rate, int(n)))


def gamma_arrivals(rate: float, cv: float, n: int, rng: np.random.Generator) -> FloatArray:
    """Renewal process with gamma gaps: mean 1/rate, coefficient of variation cv (1 = Poisson)."""
    _check(rate, n)
    if not (math.isfinite(cv) and cv > 0):
        raise UsageError(f"gamma arrival cv must be > 0, got {cv!r}")
    shape = 1.0 / (cv * cv)
    return np.cumsum(rng.gamma(shape, 1.0 / (rate * shape), int(n)))


def onoff_arrivals(
    rate: float,
    n: int,
    rng: np.random.Generator,
    *,
    on_s: float = 10.0,
    off_s: float = 10.0,
    random_periods: bool = False,
) -> FloatArray:
    """Bursty on/off arrivals whose long-run mean rate is `rate`.

    Poisson arrivals at rate * (on_s + off_s) / on_s during ON periods, silence during OFF periods.
    Periods are fixed (on_s, off_s) or exponential with those means when random_periods is set
    (a two-state Markov-modulated Poisson process).
    """
    _check(rate, n)
    if not (math.isfinite(on_s) and on_s > 0 and math.isfinite(off_s) and off_s >= 0):
        raise UsageError(f"on/off periods need on_s > 0 and off_s >= 0, got {on_s!r}, {off_s!r}")
    n = int(n)
    peak = rate * (on_s + off_s) / on_s
    # Arrivals in "busy time" (time spent ON), then mapped onto wall time by inserting OFF gaps.
    busy = np.cumsum(rng.exponential(1.0 / peak, n))
    if n == 0 or off_s == 0:
        return busy
    horizon = float(busy[-1])
    n_periods = int(horizon / on_s * 2) + 8
    while True:
        if random_periods:
            ons = rng.exponential(on_s, n_periods)
            offs = rng.exponential(off_s, n_periods)
        else:
            ons = np.full(n_periods, on_s)
            offs = np.full(n_periods, off_s)
        on_end = np.cumsum(ons)
        if on_end[-1] > horizon:
            break
        n_periods *= 2
    period = np.searchsorted(on_end, busy, side="right")  # index of the ON period holding each
    off_before = np.concatenate(([0.0], np.cumsum(offs)))[period]
    return busy + off_before
