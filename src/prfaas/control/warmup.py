"""Warm-up profiling of a real engine: measured samples -> fitted profiles, a context-sized prior.

The transformers engine has no configured profile, so the fit's prior is the model's own FLOP
shape, FLOPs(l) = q l^2 + c l (its StateSpec terms): T(l) = a * FLOPs(l) / FLOPs(ref) + b, fitted
by the control core's robust fitter. A few lengths then pin the effective FLOP rate (a) and the
per-request overhead (b), and the attention term still bends the curve beyond the longest one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from prfaas.control.profiling import PrefillFit, fit_decode, fit_prefill
from prfaas.control.window import PrefillSample
from prfaas.planner.scenario import Scenario
from prfaas.profiles import DecodeProfile, PrefillProfile
from prfaas.profiles.prefill import FloatArray
from prfaas.workload.lengths import EmpiricalLengths, LengthDistribution, TruncatedLogNormal

REF_TOKENS = 1024.0  # the prior is normalised here so the fitted scale is ~ T(1024) in seconds
MIN_SAMPLES = 3  # per cluster role: two lengths and a repeat, at least


@dataclass(frozen=True, slots=True)
class FlopShape(PrefillProfile):
    """FLOPs(l) / FLOPs(REF_TOKENS): the shape of prefill cost, not a time (the fit scales it)."""

    quadratic: float
    linear: float
    name: str = "flop-shape"
    provenance: str = "model FLOPs (StateSpec)"

    def _time(self, l_tokens: FloatArray) -> FloatArray:
        ref = self.quadratic * REF_TOKENS**2 + self.linear * REF_TOKENS
        flops = self.quadratic * l_tokens**2 + self.linear * l_tokens
        return np.asarray(flops / ref, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class WarmupSamples:
    """What a warm-up pass measured: prefill durations per cluster role, decode step times."""

    prefill: tuple[PrefillSample, ...]
    decode_steps: tuple[float, ...]
    elapsed_s: float
    context_tokens: int  # the engine's context window (the workload prior is fitted to it)

    @property
    def count(self) -> int:
        return len(self.prefill) + len(self.decode_steps)


@dataclass(frozen=True, slots=True)
class WarmupProfiles:
    prfaas: PrefillFit
    pd: PrefillFit
    decode: DecodeProfile


def fit_warmup(
    samples: WarmupSamples, shape: FlopShape, bs_max: int, has_prfaas: bool
) -> WarmupProfiles | None:
    """Per-role fits over the FLOP shape and the median decode step; None when a role the
    deployment has was not measured well enough to fit (the caller keeps the file's values)."""
    fits = {
        role: fit_prefill([s for s in samples.prefill if s.cluster_role == role], shape,
                          MIN_SAMPLES)
        for role in ("prfaas", "pd")
    }  # fmt: skip
    placeholder = DecodeProfile(bs_max, 1.0, provenance="no decode step measured")
    decode, ok = fit_decode(samples.decode_steps, placeholder, 1)
    if not (ok and fits["pd"].fitted and (fits["prfaas"].fitted or not has_prfaas)):
        return None
    remote = fits["prfaas"] if has_prfaas else fits["pd"]
    label = f"warm-up fit ({len(samples.decode_steps)} steps)"
    return WarmupProfiles(remote, fits["pd"], replace(decode, provenance=label))


def scaled_lengths(lengths: LengthDistribution, factor: float) -> LengthDistribution | None:
    """The same distribution with every length multiplied by `factor` (None: a kind this does
    not know how to scale)."""
    if isinstance(lengths, TruncatedLogNormal):
        return TruncatedLogNormal(
            lengths.mu + math.log(factor), lengths.sigma, lengths.lo * factor,
            lengths.hi * factor,
        )  # fmt: skip
    if isinstance(lengths, EmpiricalLengths):
        return EmpiricalLengths(np.maximum(lengths.values * factor, 1.0), lengths.name)
    return None


def scale_prior(prior: Scenario, factor: float) -> Scenario:
    """Every input and output length of the workload prior times `factor` (the threshold grid
    too); unchanged when the prior's length distribution is of a kind this cannot scale."""
    lengths = scaled_lengths(prior.lengths, factor)
    if lengths is None or factor == 1.0:
        return prior
    return replace(
        prior,
        lengths=lengths,
        output_tokens=max(1.0, prior.output_tokens * factor),
        threshold_step_tokens=max(1, round(prior.threshold_step_tokens * factor)),
    )


def fit_to_context(prior: Scenario, context_tokens: int) -> tuple[Scenario, float]:
    """The workload prior shrunk to a model's context: every input and output length times
    s = context / (longest input + mean output), when that is below 1, so the longest prompt
    plus a typical answer fits. The mix (the ratio of each length to the context, and of the
    output to the input) stays the prior's. Returns the scenario and s (1.0: unchanged)."""
    need = prior.lengths.max_tokens + prior.output_tokens
    factor = context_tokens / need if need > 0 else 1.0
    if factor >= 1.0 or scaled_lengths(prior.lengths, factor) is None:
        return prior, 1.0
    return scale_prior(prior, factor), factor


def warmup_lengths(context_tokens: int, lengths: Sequence[int]) -> tuple[int, ...]:
    """The measured prompt lengths that fit the context (with room for the decoded tokens)."""
    return tuple(n for n in lengths if 0 < n <= context_tokens // 2)
