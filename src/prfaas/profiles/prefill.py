"""Prefill latency profiles T_prefill(l): measured points, least-squares fits, provenance."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from prfaas.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def _scalar_or_array(value: FloatArray, like: Any) -> Any:
    return float(value) if np.ndim(like) == 0 else value


class PrefillProfile(ABC):
    """Unloaded prefill time of one instance for an uncached input of l tokens."""

    name: str
    provenance: str

    @abstractmethod
    def _time(self, l_tokens: FloatArray) -> FloatArray: ...

    def time_s(self, l_tokens: Any) -> Any:
        """Seconds for l tokens; a float for scalar input, an ndarray for array input."""
        arr = np.asarray(l_tokens, dtype=np.float64)
        return _scalar_or_array(self._time(arr), l_tokens)


@dataclass(frozen=True, slots=True)
class MeasuredPoint:
    """One profiled length: tokens, prefill seconds, KV/state size in bytes (if measured)."""

    tokens: float
    prefill_s: float
    kv_bytes: float | None = None


@dataclass(frozen=True, slots=True)
class PolynomialPrefill(PrefillProfile):
    """T(l) = sum coeffs[i] * l**(deg - i) (numpy.polyval order), seconds."""

    coeffs: tuple[float, ...]
    name: str
    provenance: str
    points: tuple[MeasuredPoint, ...] = ()

    def __post_init__(self) -> None:
        if not self.coeffs or not all(np.isfinite(self.coeffs)):
            raise ConfigError(f"prefill profile {self.name}: coefficients must be finite numbers")
        # Times must be positive and non-decreasing over the lengths a planner can ask for.
        grid = np.linspace(0.0, 2_000_000.0, 2001)
        t = np.polyval(self.coeffs, grid)
        if np.any(t <= 0) or np.any(np.diff(t) < -1e-12):
            raise ConfigError(
                f"prefill profile {self.name}: T(l) must be positive and non-decreasing for l >= 0"
            )

    def _time(self, l_tokens: FloatArray) -> FloatArray:
        return np.asarray(np.polyval(self.coeffs, l_tokens), dtype=np.float64)


def fit_polynomial(
    points: Sequence[MeasuredPoint], degree: int, *, name: str, provenance: str
) -> PolynomialPrefill:
    """Least-squares polynomial fit of prefill time vs tokens (exact when len == degree + 1)."""
    if len(points) < degree + 1:
        raise ConfigError(f"prefill profile {name}: degree {degree} needs >= {degree + 1} points")
    x = np.array([p.tokens for p in points], dtype=np.float64)
    y = np.array([p.prefill_s for p in points], dtype=np.float64)
    coeffs = np.polyfit(x, y, degree)
    return PolynomialPrefill(
        coeffs=tuple(float(c) for c in coeffs),
        name=name,
        provenance=provenance,
        points=tuple(points),
    )


def quadratic(a2: float, a1: float, a0: float, *, name: str, provenance: str) -> PolynomialPrefill:
    """T(l) = a2 l^2 + a1 l + a0 seconds."""
    return PolynomialPrefill(coeffs=(a2, a1, a0), name=name, provenance=provenance)


@dataclass(frozen=True, slots=True)
class TablePrefill(PrefillProfile):
    """Piecewise-linear interpolation through measured points, linear extrapolation beyond them."""

    points: tuple[MeasuredPoint, ...]
    name: str
    provenance: str

    def __post_init__(self) -> None:
        xs = [p.tokens for p in self.points]
        ys = [p.prefill_s for p in self.points]
        if len(xs) < 2 or any(b <= a for a, b in itertools.pairwise(xs)):
            raise ConfigError(f"prefill table {self.name}: need >= 2 points with increasing tokens")
        if any(y <= 0 for y in ys) or any(b < a for a, b in itertools.pairwise(ys)):
            raise ConfigError(f"prefill table {self.name}: times must be > 0 and non-decreasing")

    def _time(self, l_tokens: FloatArray) -> FloatArray:
        x = np.array([p.tokens for p in self.points])
        y = np.array([p.prefill_s for p in self.points])
        out = np.interp(l_tokens, x, y)
        lo_slope = (y[1] - y[0]) / (x[1] - x[0])
        hi_slope = (y[-1] - y[-2]) / (x[-1] - x[-2])
        out = np.where(l_tokens < x[0], y[0] + (l_tokens - x[0]) * lo_slope, out)
        out = np.where(l_tokens > x[-1], y[-1] + (l_tokens - x[-1]) * hi_slope, out)
        return np.asarray(np.maximum(out, 1e-9), dtype=np.float64)
