"""Truncated log-normal statistics against 30-digit mpmath quadrature, deep in either tail."""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prfaas.workload import TruncatedLogNormal

RTOL = 1e-8


@dataclass(frozen=True)
class Reference:
    """P(L <= t), P(L > t), E[L | L > t], E[L | L <= t], E[L] by quadrature of the density."""

    cdf: float
    sf: float
    mean_greater: float
    mean_at_most: float
    mean: float
    density: float  # dF/d(ln t): how much an error in t itself moves the cdf


def _integral(a: mp.mpf, b: mp.mpf, centre: mp.mpf, weight: mp.mpf) -> mp.mpf:
    """∫_a^b exp(weight·z − z²/2) dz, with breakpoints that follow its peak at `centre`.

    Deep in a tail the integrand falls by e^-|peak − centre| per unit of z, so the breakpoints
    sit at geometrically growing distances from the peak on that scale.
    """
    if b <= a:
        return mp.mpf(0)
    peak = min(max(centre, a), b)
    scale = 1 / max(mp.mpf(1), abs(peak - centre))
    points = {a, b, peak}
    for k in range(80):
        for p in (peak - scale * 2**k, peak + scale * 2**k):
            if a < p < b:
                points.add(p)
    return mp.quad(lambda z: mp.exp(weight * z - z * z / 2), sorted(points))


def reference(mu: float, sigma: float, lo: float, hi: float, t: float) -> Reference:
    with mp.workdps(30):
        s = mp.mpf(sigma)

        def z(x: float) -> mp.mpf:
            return (mp.log(mp.mpf(min(max(x, lo), hi))) - mu) / s

        za, zt, zb = z(lo), z(t), z(hi)
        # mass: weight 0, peak at z = 0; first moment: e^(mu + s z) φ(z), peak at z = s
        below, above = _integral(za, zt, 0, 0), _integral(zt, zb, 0, 0)
        m_below, m_above = _integral(za, zt, s, s), _integral(zt, zb, s, s)
        total = below + above
        scale = mp.exp(mu)

        def ratio(num: mp.mpf, den: mp.mpf) -> float:
            return float(scale * num / den) if den > 0 else math.nan

        return Reference(
            cdf=float(below / total),
            sf=float(above / total),
            mean_greater=ratio(m_above, above),
            mean_at_most=ratio(m_below, below),
            mean=ratio(m_below + m_above, total),
            density=float(mp.exp(-zt * zt / 2) / (s * total)),
        )


def _check(mu: float, sigma: float, lo: float, hi: float, t: float) -> None:
    dist = TruncatedLogNormal(mu, sigma, lo, hi)
    ref = reference(mu, sigma, lo, hi, t)
    got = Reference(
        cdf=dist.cdf(t),
        sf=dist.prob_greater(t),
        mean_greater=dist.mean_greater(t),
        mean_at_most=dist.mean_at_most(t),
        mean=dist.mean,
        density=ref.density,
    )
    for field in ("cdf", "sf", "mean_greater", "mean_at_most", "mean"):
        want, have = getattr(ref, field), getattr(got, field)
        if math.isnan(want):
            assert math.isnan(have), (field, have)
        else:
            assert have == pytest.approx(want, rel=RTOL, abs=0), (field, dist, t)


def test_the_reported_case_keeps_its_tail() -> None:
    # mu far below ln(lo): ndtr(zb) - ndtr(za) of two numbers within 1e-15 of 1 used to give 0.
    dist = TruncatedLogNormal(-3.0, 1.0, 128, 131072)
    assert dist.prob_greater(200) == pytest.approx(0.025796, rel=1e-4)
    _check(-3.0, 1.0, 128, 131072, 200)


# A wide grid: the truncation window in the body, far in the upper tail (mu << ln lo) and far in
# the lower tail (mu >> ln hi) of the untruncated log-normal, narrow and wide sigma.
GRID = [
    (mu, sigma, lo, hi)
    for mu in (-40.0, -3.0, 2.0, 9.9, 16.0, 60.0)
    for sigma in (0.05, 0.3, 1.0, 4.0)
    for lo, hi in ((1.0, 50.0), (128.0, 131072.0), (4000.0, 4400.0))
]


@pytest.mark.parametrize(("mu", "sigma", "lo", "hi"), GRID)
def test_grid_against_quadrature(mu: float, sigma: float, lo: float, hi: float) -> None:
    for frac in (0.0, 1e-6, 0.1, 0.5, 0.9, 1 - 1e-6, 1.0):
        t = lo * (hi / lo) ** frac
        _check(mu, sigma, lo, hi, t)


@settings(max_examples=60, deadline=None)
@given(
    mu=st.floats(-60, 60),
    sigma=st.floats(0.02, 6),
    log_lo=st.floats(0, 12),
    log_width=st.floats(0.01, 10),
    frac=st.floats(0, 1),
)
def test_property_against_quadrature(
    mu: float, sigma: float, log_lo: float, log_width: float, frac: float
) -> None:
    lo = math.exp(log_lo)
    hi = lo * math.exp(log_width)
    _check(mu, sigma, lo, hi, lo * (hi / lo) ** frac)


@settings(max_examples=40, deadline=None)
@given(
    mu=st.floats(-60, 60),
    sigma=st.floats(0.02, 6),
    log_lo=st.floats(0, 12),
    log_width=st.floats(0.01, 10),
    q=st.floats(1e-9, 1 - 1e-9),
)
def test_quantile_inverts_the_reference_cdf(
    mu: float, sigma: float, log_lo: float, log_width: float, q: float
) -> None:
    lo = math.exp(log_lo)
    hi = lo * math.exp(log_width)
    x = TruncatedLogNormal(mu, sigma, lo, hi).quantile(q)
    ref = reference(mu, sigma, lo, hi, x)
    # x is right to 1e-13 relative: near lo, q = 1e-9 may need more digits than x can hold
    slack = ref.density * 1e-13
    assert ref.cdf == pytest.approx(q, rel=1e-7, abs=slack)
    assert ref.sf == pytest.approx(1 - q, rel=1e-7, abs=slack)


def test_vectorised_statistics_equal_scalar_ones() -> None:
    dist = TruncatedLogNormal(-3.0, 1.0, 128, 131072)
    ts = np.array([0.0, 128.0, 150.0, 200.0, 1e4, 131072.0, 2e5])
    for name in ("cdf", "prob_greater", "mean_greater", "mean_at_most"):
        vec = getattr(dist, name)(ts)
        one = [getattr(dist, name)(float(t)) for t in ts]
        np.testing.assert_allclose(vec, one, rtol=1e-15, equal_nan=True)
