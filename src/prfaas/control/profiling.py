"""Online profiling: robust fits of T_prefill(l) and the decode step time from observations.

The configured profile is the prior: the fit is T(l) = a * T_prior(l) + b, so a handful of
samples over a narrow range of lengths cannot bend the curve where nothing was observed, and the
typical live deviation (a constant per-request overhead, a uniformly slower node) is captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from prfaas.control.window import PrefillSample
from prfaas.profiles import DecodeProfile, PrefillProfile
from prfaas.profiles.prefill import FloatArray

HUBER_K = 1.345  # the usual 95%-efficiency tuning constant, in units of the residual scale
IRLS_ROUNDS = 20


@dataclass(frozen=True, slots=True)
class ScaledPrefill(PrefillProfile):
    """T(l) = scale * base(l) + offset_s (never below 1 µs)."""

    base: PrefillProfile
    scale: float
    offset_s: float
    name: str = "fitted"
    provenance: str = "online fit"

    def _time(self, l_tokens: FloatArray) -> FloatArray:
        t = self.scale * np.asarray(self.base.time_s(l_tokens), dtype=np.float64) + self.offset_s
        return np.asarray(np.maximum(t, 1e-6), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PrefillFit:
    profile: PrefillProfile
    samples: int
    fitted: bool  # False: too few samples (or a degenerate fit), the prior is used


@dataclass(frozen=True, slots=True)
class ProfileEstimates:
    """Per cluster role prefill profile, decode step time, and their sample counts."""

    prfaas: PrefillFit
    pd: PrefillFit
    decode: DecodeProfile
    decode_samples: int
    decode_fitted: bool


def huber_line(x: FloatArray, y: FloatArray) -> tuple[float, float]:
    """(slope, intercept) of y ~ slope * x + intercept by Huber-weighted IRLS."""
    w = np.ones_like(y)
    design = np.column_stack([x, np.ones_like(x)])
    coef = np.zeros(2)
    for _ in range(IRLS_ROUNDS):
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
        r = y - design @ coef
        scale = 1.4826 * float(np.median(np.abs(r - np.median(r))))
        if scale <= 1e-12:
            break
        u = np.abs(r) / (HUBER_K * scale)
        w = np.where(u <= 1.0, 1.0, 1.0 / np.maximum(u, 1e-12))
    return float(coef[0]), float(coef[1])


def fit_prefill(
    samples: Sequence[PrefillSample], prior: PrefillProfile, min_samples: int
) -> PrefillFit:
    """Fit scale and offset over the prior; the prior itself until enough samples arrive."""
    n = len(samples)
    if n < max(min_samples, 2):
        return PrefillFit(prior, n, False)
    x = np.asarray(prior.time_s(np.array([s.tokens for s in samples], dtype=np.float64)))
    y = np.array([s.duration_s for s in samples], dtype=np.float64)
    if float(np.ptp(x)) <= 1e-9 * max(float(np.max(x)), 1e-9):
        # One length only: the offset is not identifiable; fit the scale through the origin.
        scale, offset = float(np.median(y / np.maximum(x, 1e-12))), 0.0
    else:
        scale, offset = huber_line(x, y)
    if not (np.isfinite(scale) and np.isfinite(offset)) or scale <= 0:
        return PrefillFit(prior, n, False)
    return PrefillFit(ScaledPrefill(prior, scale, offset), n, True)


def fit_decode(
    steps: Sequence[float], prior: DecodeProfile, min_samples: int
) -> tuple[DecodeProfile, bool]:
    """The median observed step time replaces T_decode once enough steps were seen."""
    if len(steps) < max(min_samples, 1):
        return prior, False
    step = float(np.median(np.asarray(steps, dtype=np.float64)))
    if not step > 0:
        return prior, False
    return replace(prior, t_decode_s=step, provenance="online fit"), True


def estimate_profiles(
    samples: Sequence[PrefillSample],
    steps: Sequence[float],
    prfaas_prior: PrefillProfile,
    pd_prior: PrefillProfile,
    decode_prior: DecodeProfile,
    min_samples: int,
) -> ProfileEstimates:
    remote = [s for s in samples if s.cluster_role == "prfaas"]
    local = [s for s in samples if s.cluster_role == "pd"]
    decode, fitted = fit_decode(steps, decode_prior, min_samples)
    return ProfileEstimates(
        fit_prefill(remote, prfaas_prior, min_samples),
        fit_prefill(local, pd_prior, min_samples),
        decode,
        len(steps),
        fitted,
    )
