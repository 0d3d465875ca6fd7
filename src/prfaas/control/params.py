"""Policy parameters from the planner: t, the bandwidth table and typical service times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from prfaas.planner.model import evaluate
from prfaas.planner.scenario import Scenario
from prfaas.policy.params import PolicyParams
from prfaas.policy.thresholds import threshold_table
from prfaas.profiles import KvSizeProfile, PrefillProfile
from prfaas.profiles.kv import LinearKvSize

TYPICAL_TOKENS = 8192.0  # where a per-token rate is taken when the plan has no typical length


def derive_params(
    scn: Scenario,
    n_p: int,
    n_d: int,
    threshold_tokens: int,
    base: PolicyParams | None = None,
    *,
    link_gbps: float | None = None,
) -> PolicyParams:
    """`base` with t, the planner's t at each link capacity (fractions of the scenario's nominal
    rate) and the PrfaaS / PD-P service times T(l_long) / T(l_short) at t (they turn queue
    lengths into waits); `link_gbps` is the capacity those typical lengths are evaluated at."""
    base = base if base is not None else PolicyParams()
    at = scn if link_gbps is None else scn.with_link(max(link_gbps, 1e-6))
    s = evaluate(at, threshold_tokens, n_p, n_d)
    remote_s = float(scn.prfaas_prefill.time_s(s.l_long)) if s.l_long else base.remote_service_s
    local_s = float(scn.pd_prefill.time_s(s.l_short)) if s.l_short else base.local_service_s
    l_long, l_short = s.l_long or TYPICAL_TOKENS, s.l_short or TYPICAL_TOKENS
    state, per_token = kv_line(scn.kv_size)
    return replace(
        base,
        threshold_tokens=int(threshold_tokens),
        threshold_by_gbps=threshold_table(scn, n_p, n_d),
        remote_service_s=remote_s,
        local_service_s=local_s,
        remote_prefill_poly=prefill_poly(scn.prfaas_prefill),
        local_prefill_poly=prefill_poly(scn.pd_prefill),
        remote_s_per_token=float(scn.prfaas_prefill.time_s(l_long)) / l_long,
        local_s_per_token=float(scn.pd_prefill.time_s(l_short)) / l_short,
        kv_state_bytes=state,
        kv_bytes_per_token=per_token,
    )


def prefill_poly(profile: PrefillProfile) -> tuple[float, ...]:
    """A quadratic through T(l) over the lengths requests have (relative error weighted), so the
    policy evaluates any profile (table, roofline, fitted) with a few multiplications."""
    x = np.geomspace(16.0, 262_144.0, 64)
    y = np.asarray(profile.time_s(x), dtype=np.float64)
    return tuple(float(c) for c in np.polyfit(x, y, 2, w=1.0 / np.maximum(y, 1e-9)))


def kv_line(kv: KvSizeProfile) -> tuple[float, float]:
    """(state bytes, KV bytes per token) of S_kv(l)."""
    if isinstance(kv, LinearKvSize):
        return kv.fixed_bytes, kv.bytes_per_token + kv.swa_bytes_per_token
    s0 = float(kv.bytes(0.0))
    return s0, (float(kv.bytes(TYPICAL_TOKENS)) - s0) / TYPICAL_TOKENS


def with_overrides(params: PolicyParams, explicit: Mapping[str, Any]) -> PolicyParams:
    """Values written in the deployment file win over derived ones."""
    return replace(params, **dict(explicit)) if explicit else params


def describe_sources(explicit: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """'t=file, threshold_by_gbps=planner, ...' for the startup line."""
    names = {"threshold_tokens": "t"}
    return ", ".join(f"{names.get(k, k)}={'file' if k in explicit else 'planner'}" for k in keys)
