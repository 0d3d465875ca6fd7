"""Standard-normal interval masses and quantiles in log space, accurate deep in either tail."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import erf, erfcx, log_ndtr, ndtr, ndtri, ndtri_exp

FloatArray = npt.NDArray[np.float64]
_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
NARROW = 1e-3
# Below this |z| no normal tail mass underflows (Q(30) = 5e-198), so quantiles stay in linear space.
LINEAR_BELOW_Z = 30.0


def _log1mexp(x: FloatArray) -> FloatArray:
    """log(1 - exp(x)) for x <= 0 (Mächler's two branches); -inf at x = 0."""
    near = x > -_LN2
    out = np.where(near, np.log(-np.expm1(np.where(near, x, -1.0))), np.log1p(-np.exp(x)))
    return np.asarray(out, dtype=np.float64)


def _log_upper(a: FloatArray, b: FloatArray, width: FloatArray) -> FloatArray:
    """log(Q(a) - Q(b)) for 0 <= a <= b = a + width, Q(x) = 1 - Phi(x) = erfcx(x/√2) e^(-x²/2) / 2.

    The ratio Q(b)/Q(a) splits into a slowly varying erfcx ratio and exp(-width (b+a)/2), so a
    narrow interval far out in the tail does not cancel two nearly equal logs.
    """
    ea, eb = erfcx(a / _SQRT2), erfcx(b / _SQRT2)
    log_ratio = np.log(eb / ea) - 0.5 * width * (b + a)
    return np.asarray(np.log(0.5 * ea) - 0.5 * a * a + _log1mexp(log_ratio), dtype=np.float64)


def _log_narrow(a: FloatArray, width: FloatArray) -> FloatArray:
    """log ∫_a^(a+width) φ by the midpoint series 2h φ(m) (1 + (m²-1) h²/6 + He4(m) h^4/120).

    Used when h (1 + |m|) < NARROW, where the next term is below 1e-19 relative; the tail formula
    would divide two erfcx values that differ only in their last digits.
    """
    h = 0.5 * width
    m = a + h
    m2, h2 = m * m, h * h
    series = h2 * (m2 - 1.0) / 6.0 + h2 * h2 * (m2 * m2 - 6.0 * m2 + 3.0) / 120.0
    return np.asarray(np.log(width) - 0.5 * m2 - LOG_SQRT_2PI + np.log1p(series), np.float64)


def log_ndtr_diff(
    a: npt.ArrayLike, b: npt.ArrayLike, width: npt.ArrayLike | None = None
) -> FloatArray:
    """log(Phi(b) - Phi(a)) for a <= b elementwise; -inf where a == b.

    Phi(b) - Phi(a) = Q(a) - Q(b) is computed in whichever tail holds the interval (mirrored for
    the lower one), and as a sum of two positive erf terms when the interval straddles 0, so no
    difference of two numbers close to 1 is ever taken (ndtr(b) - ndtr(a) loses every digit once
    both exceed 1 - 1e-16). `width` is b - a when the caller knows it more precisely than the
    difference of the rounded a and b (a narrow interval at |z| ~ 1000).
    """
    w = np.subtract(b, a) if width is None else width
    a_arr, b_arr, w_arr = np.broadcast_arrays(
        np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(w, np.float64)
    )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        upper = _log_upper(np.maximum(a_arr, 0.0), np.maximum(b_arr, 0.0), w_arr)
        lower = _log_upper(np.maximum(-b_arr, 0.0), np.maximum(-a_arr, 0.0), w_arr)
        middle = np.log(0.5 * (erf(b_arr / _SQRT2) + erf(-a_arr / _SQRT2)))
        out = np.where(a_arr >= 0, upper, np.where(b_arr <= 0, lower, middle))
        reach = 0.5 * w_arr * (1.0 + np.abs(a_arr + 0.5 * w_arr))
        out = np.where((reach < NARROW) & (w_arr > 0), _log_narrow(a_arr, w_arr), out)
    return np.asarray(out, dtype=np.float64)


def truncated_ndtri(q: npt.ArrayLike, za: float, zb: float, log_mass: float) -> FloatArray:
    """z with (Phi(z) - Phi(za)) / (Phi(zb) - Phi(za)) = q, log_mass = log_ndtr_diff(za, zb).

    Phi(z) = Phi(za) + q M and Q(z) = Q(zb) + (1 - q) M are both sums of positive terms; the first
    is inverted where z <= 0 and the second where z > 0, so neither inverts a number near 1.
    """
    qa = np.asarray(q, dtype=np.float64)
    if max(abs(za), abs(zb)) < LINEAR_BELOW_Z:
        # Nothing underflows: the same two sums in linear space, inverted by the faster ndtri.
        mass = math.exp(log_mass)
        phi = ndtr(za) + qa * mass
        from_below, from_above = ndtri(np.minimum(phi, 1.0)), -ndtri(ndtr(-zb) + (1 - qa) * mass)
        out = np.where(phi <= 0.5, from_below, from_above)
        return np.asarray(np.clip(out, za, zb), dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_phi = np.logaddexp(log_ndtr(za), np.log(qa) + log_mass)
        log_q = np.logaddexp(log_ndtr(-zb), np.log1p(-qa) + log_mass)
    from_below = ndtri_exp(np.minimum(log_phi, 0.0))
    from_above = -ndtri_exp(np.minimum(log_q, 0.0))
    out = np.where(log_phi <= -_LN2, from_below, from_above)
    return np.asarray(np.clip(out, za, zb), dtype=np.float64)
