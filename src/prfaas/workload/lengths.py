"""Input-length distributions with exact conditional statistics (no Monte Carlo noise)."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from prfaas.errors import ConfigError
from prfaas.workload.normal_tail import LOG_SQRT_2PI, log_ndtr_diff, truncated_ndtri

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Interval = tuple[FloatArray, FloatArray, FloatArray]  # (z0, z1, z1 - z0) of a standard normal
# Beyond this |z| the quantile is polished by Newton steps (see TruncatedLogNormal._quantile).
NEWTON_BEYOND_Z = 8.0


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    """num / den, NaN where den == 0 (the conditional mean of an empty set is undefined)."""
    out = np.full(np.shape(num), np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _as_out(value: FloatArray, like: Any) -> Any:
    """Return a Python float for scalar input, an ndarray otherwise."""
    if np.ndim(like) == 0:
        return float(np.asarray(value).reshape(()))
    return value


class LengthDistribution(ABC):
    """Distribution of uncached input lengths L (tokens); every method also accepts numpy arrays.

    Subclasses provide `_cdf(x) = P(L <= x)` and `_partial_mean(x) = E[L * 1{L <= x}]`; the
    conditional statistics of the paper's Table 4 follow from those two exactly. A subclass whose
    tails make `1 - cdf` or `mean - partial_mean` cancel overrides `_sf` / `_mean_greater` /
    `_mean_at_most` with forms that do not.
    """

    name: str = "lengths"

    @property
    @abstractmethod
    def mean(self) -> float:
        """E[L]."""

    @property
    @abstractmethod
    def min_tokens(self) -> float:
        """Smallest possible length."""

    @property
    @abstractmethod
    def max_tokens(self) -> float:
        """Largest possible length."""

    @abstractmethod
    def _cdf(self, x: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _partial_mean(self, x: FloatArray) -> FloatArray: ...

    @abstractmethod
    def _quantile(self, q: FloatArray) -> FloatArray: ...

    def _sf(self, x: FloatArray) -> FloatArray:
        return 1.0 - self._cdf(x)

    def _mean_greater(self, t: FloatArray) -> FloatArray:
        return _ratio(self.mean - self._partial_mean(t), self._sf(t))

    def _mean_at_most(self, t: FloatArray) -> FloatArray:
        return _ratio(self._partial_mean(t), self._cdf(t))

    @abstractmethod
    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        """n lengths drawn with the injected generator (int64 tokens)."""

    @abstractmethod
    def discretise(self, n_points: int = 200_000) -> tuple[FloatArray, FloatArray]:
        """(values, probabilities) whose weighted sums approximate expectations over L.

        Empirical distributions return their exact support; continuous ones return the midpoints of
        n_points equal-probability bins (midpoint quadrature in probability space).
        """

    @overload
    def cdf(self, x: float) -> float: ...
    @overload
    def cdf(self, x: FloatArray) -> FloatArray: ...
    def cdf(self, x: Any) -> Any:
        """P(L <= x)."""
        return _as_out(self._cdf(np.asarray(x, dtype=np.float64)), x)

    @overload
    def prob_greater(self, t: float) -> float: ...
    @overload
    def prob_greater(self, t: FloatArray) -> FloatArray: ...
    def prob_greater(self, t: Any) -> Any:
        """p = P(L > t), the fraction a threshold t routes to PrfaaS."""
        return _as_out(self._sf(np.asarray(t, dtype=np.float64)), t)

    @overload
    def mean_greater(self, t: float) -> float: ...
    @overload
    def mean_greater(self, t: FloatArray) -> FloatArray: ...
    def mean_greater(self, t: Any) -> Any:
        """l_long = E[L | L > t]; NaN where P(L > t) = 0."""
        return _as_out(self._mean_greater(np.asarray(t, dtype=np.float64)), t)

    @overload
    def mean_at_most(self, t: float) -> float: ...
    @overload
    def mean_at_most(self, t: FloatArray) -> FloatArray: ...
    def mean_at_most(self, t: Any) -> Any:
        """l_short = E[L | L <= t]; NaN where P(L <= t) = 0."""
        return _as_out(self._mean_at_most(np.asarray(t, dtype=np.float64)), t)

    @overload
    def quantile(self, q: float) -> float: ...
    @overload
    def quantile(self, q: FloatArray) -> FloatArray: ...
    def quantile(self, q: Any) -> Any:
        """Smallest x with P(L <= x) >= q (q in [0, 1])."""
        qa = np.asarray(q, dtype=np.float64)
        if np.any((qa < 0) | (qa > 1)) or np.any(np.isnan(qa)):
            raise ValueError("quantile level must be in [0, 1]")
        return _as_out(self._quantile(qa), q)


class TruncatedLogNormal(LengthDistribution):
    """log L ~ Normal(mu, sigma), truncated to [lo, hi]; closed-form conditional moments.

    Every statistic is a ratio of standard-normal interval masses evaluated in log space
    (normal_tail.log_ndtr_diff), so it keeps full relative precision when [lo, hi] lies far in
    either tail of the untruncated distribution (mu << ln lo or mu >> ln hi).
    """

    def __init__(self, mu: float, sigma: float, lo: float, hi: float) -> None:
        for field, value in (("mu", mu), ("sigma", sigma), ("lo", lo), ("hi", hi)):
            if not math.isfinite(value):
                raise ConfigError(f"lognormal {field} must be a finite number, got {value!r}")
        if sigma <= 0:
            raise ConfigError(f"lognormal sigma must be > 0, got {sigma}")
        if not 0 < lo < hi:
            raise ConfigError(f"lognormal bounds need 0 < lo < hi, got lo={lo}, hi={hi}")
        self.mu, self.sigma, self.lo, self.hi = float(mu), float(sigma), float(lo), float(hi)
        self.name = f"lognormal(mu={mu:g}, sigma={sigma:g}, [{lo:g}, {hi:g}])"
        self._za = (math.log(lo) - mu) / sigma
        self._zb = (math.log(hi) - mu) / sigma
        self._log_mass = float(log_ndtr_diff(self._za, self._zb, math.log(hi / lo) / sigma))
        if not math.isfinite(self._log_mass):
            raise ConfigError("lognormal truncation [lo, hi] holds no probability mass")
        # E[L 1{a < L <= x}] untruncated: e^(mu + s^2/2) (Phi(zx - s) - Phi(za - s)).
        self._log_m = mu + sigma * sigma / 2
        self._mean = float(self._mean_between(self._below(np.asarray(self.hi))))

    @property
    def mean(self) -> float:
        return self._mean

    @property
    def min_tokens(self) -> float:
        return self.lo

    @property
    def max_tokens(self) -> float:
        return self.hi

    def _below(self, x: FloatArray) -> Interval:
        """(za, z(x), width) with x clipped to [lo, hi]; the width straight from x / lo."""
        c = np.clip(x, self.lo, self.hi)
        z = (np.log(c) - self.mu) / self.sigma
        width = np.log1p((c - self.lo) / self.lo) / self.sigma
        return np.full(np.shape(z), self._za), np.asarray(z, np.float64), width

    def _above(self, x: FloatArray) -> Interval:
        """(z(x), zb, width) with x clipped to [lo, hi]."""
        c = np.clip(x, self.lo, self.hi)
        z = (np.log(c) - self.mu) / self.sigma
        width = -np.log1p((c - self.hi) / self.hi) / self.sigma
        return np.asarray(z, np.float64), np.full(np.shape(z), self._zb), width

    def _share(self, iv: Interval) -> FloatArray:
        """P(z0 < Z <= z1 | za <= Z <= zb) for the sub-interval iv = (z0, z1, z1 - z0)."""
        with np.errstate(under="ignore"):
            out = np.exp(log_ndtr_diff(*iv) - self._log_mass)
        return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float64)

    def _mean_between(self, iv: Interval) -> FloatArray:
        """E[L | z0 < Z <= z1] (NaN where the interval is empty), clipped to [lo, hi]."""
        z0, z1, width = iv
        s = self.sigma
        with np.errstate(invalid="ignore", over="ignore"):
            log_mass = log_ndtr_diff(z0, z1, width)
            out = np.exp(self._log_m + log_ndtr_diff(z0 - s, z1 - s, width) - log_mass)
        return np.asarray(np.clip(out, self.lo, self.hi), dtype=np.float64)

    def _cdf(self, x: FloatArray) -> FloatArray:
        return self._share(self._below(x))

    def _sf(self, x: FloatArray) -> FloatArray:
        return self._share(self._above(x))

    def _partial_mean(self, x: FloatArray) -> FloatArray:
        out = self._cdf(x) * self._mean_between(self._below(x))
        return np.asarray(np.nan_to_num(out, nan=0.0), dtype=np.float64)

    def _mean_greater(self, t: FloatArray) -> FloatArray:
        return self._mean_between(self._above(t))

    def _mean_at_most(self, t: FloatArray) -> FloatArray:
        return self._mean_between(self._below(t))

    def _quantile(self, q: FloatArray) -> FloatArray:
        z = truncated_ndtri(q, self._za, self._zb, self._log_mass)
        x = np.clip(np.exp(self.mu + self.sigma * z), self.lo, self.hi)
        if max(abs(self._za), abs(self._zb)) < NEWTON_BEYOND_Z:
            return np.asarray(x, dtype=np.float64)
        # Far in a tail the rounding of z itself moves the cdf (by about |z| ulps); two Newton
        # steps on the accurate cdf / sf (whichever is the smaller) put x within a few ulps.
        low = q <= 0.5
        for _ in range(2):
            resid = np.where(low, self._cdf(x) - q, (1.0 - q) - self._sf(x))
            z = (np.log(x) - self.mu) / self.sigma
            with np.errstate(over="ignore", under="ignore"):
                dens = np.exp(-0.5 * z * z - LOG_SQRT_2PI - self._log_mass) / self.sigma
                step = np.where(dens > 0, resid / dens, 0.0)
            x = np.clip(x * np.exp(-np.clip(step, -1.0, 1.0)), self.lo, self.hi)
        return np.asarray(x, dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        values = self._quantile(rng.random(int(n)))
        lo, hi = math.ceil(self.lo), math.floor(self.hi)
        return np.clip(np.rint(values), lo, hi).astype(np.int64)

    def discretise(self, n_points: int = 200_000) -> tuple[FloatArray, FloatArray]:
        q = (np.arange(n_points, dtype=np.float64) + 0.5) / n_points
        return self._quantile(q), np.full(n_points, 1.0 / n_points)

    def __repr__(self) -> str:
        return f"TruncatedLogNormal(mu={self.mu}, sigma={self.sigma}, lo={self.lo}, hi={self.hi})"


class EmpiricalLengths(LengthDistribution):
    """The exact distribution of a finite sample (e.g. a trace's input lengths)."""

    def __init__(self, values: npt.ArrayLike, name: str = "empirical") -> None:
        arr = np.sort(np.asarray(values, dtype=np.float64).ravel())
        if arr.size == 0:
            raise ConfigError("an empirical length distribution needs at least one value")
        if not np.all(np.isfinite(arr)) or arr[0] < 0:
            raise ConfigError("empirical lengths must be finite and >= 0")
        self.values = arr
        self.name = name
        self._n = arr.size
        # cumulative sums with a leading 0 so E[L 1{L <= x}] is one searchsorted away
        self._cumsum = np.concatenate(([0.0], np.cumsum(arr)))
        self._mean = float(self._cumsum[-1] / self._n)

    @classmethod
    def from_trace(cls, path: str | Any, *, skip_bad_lines: bool = False) -> EmpiricalLengths:
        """Input lengths of a Mooncake-format trace."""
        from prfaas.workload.trace import read_trace

        data = read_trace(path, skip_bad_lines=skip_bad_lines)
        if not data.requests:
            raise ConfigError(f"trace {path} holds no requests")
        return cls(data.input_lengths(), name=f"trace:{getattr(path, 'name', path)}")

    @property
    def mean(self) -> float:
        return self._mean

    @property
    def min_tokens(self) -> float:
        return float(self.values[0])

    @property
    def max_tokens(self) -> float:
        return float(self.values[-1])

    def _count_at_most(self, x: FloatArray) -> npt.NDArray[np.intp]:
        return np.searchsorted(self.values, x, side="right")

    def _cdf(self, x: FloatArray) -> FloatArray:
        return self._count_at_most(x) / float(self._n)

    def _partial_mean(self, x: FloatArray) -> FloatArray:
        return np.asarray(self._cumsum[self._count_at_most(x)] / self._n, dtype=np.float64)

    def _quantile(self, q: FloatArray) -> FloatArray:
        idx = np.clip(np.ceil(q * self._n).astype(np.int64) - 1, 0, self._n - 1)
        return np.asarray(self.values[idx], dtype=np.float64)

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        idx = rng.integers(0, self._n, size=int(n))
        return np.asarray(np.rint(self.values[idx]), dtype=np.int64)

    def discretise(self, n_points: int = 200_000) -> tuple[FloatArray, FloatArray]:
        uniq, counts = np.unique(self.values, return_counts=True)
        return uniq.astype(np.float64), counts / float(self._n)

    def __repr__(self) -> str:
        return f"EmpiricalLengths(n={self._n}, mean={self._mean:.1f})"
