"""Scalar fast paths for profiles: the hot loop must not pay numpy's per-call overhead."""

from __future__ import annotations

from collections.abc import Callable

from prfaas.profiles import KvSizeProfile, LinearKvSize, PolynomialPrefill, PrefillProfile


def prefill_time_fn(profile: PrefillProfile) -> Callable[[float], float]:
    """T(l) as a plain-Python function (Horner for polynomials, the profile itself otherwise)."""
    if isinstance(profile, PolynomialPrefill):
        coeffs = tuple(float(c) for c in profile.coeffs)

        def poly(l_tokens: float) -> float:
            acc = 0.0
            for c in coeffs:
                acc = acc * l_tokens + c
            return acc

        return poly
    return lambda l_tokens: float(profile.time_s(float(l_tokens)))


def kv_bytes_fn(profile: KvSizeProfile) -> Callable[[float], float]:
    """S_kv(l) in bytes as a plain-Python function."""
    if isinstance(profile, LinearKvSize):
        fixed, per_token = profile.fixed_bytes, profile.bytes_per_token
        swa, window = profile.swa_bytes_per_token, profile.swa_window_tokens
        if swa == 0:
            return lambda l_tokens: fixed + per_token * l_tokens
        return lambda l_tokens: fixed + per_token * l_tokens + swa * min(l_tokens, window)
    return lambda l_tokens: float(profile.bytes(float(l_tokens)))


def kv_split(profile: KvSizeProfile) -> tuple[float, float]:
    """(state bytes, KV bytes per token): the fixed part and the marginal per-token part."""
    if isinstance(profile, LinearKvSize):
        return profile.fixed_bytes, profile.bytes_per_token + profile.swa_bytes_per_token
    s0 = float(profile.bytes(0.0))
    return s0, float(profile.bytes(1000.0)) / 1000.0 - s0 / 1000.0
