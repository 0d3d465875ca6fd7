"""Policy parameters from the planner: t, the bandwidth table and typical service times."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from prfaas.planner.model import evaluate
from prfaas.planner.scenario import Scenario
from prfaas.policy.params import PolicyParams
from prfaas.policy.thresholds import threshold_table


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
    return replace(
        base,
        threshold_tokens=int(threshold_tokens),
        threshold_by_gbps=threshold_table(scn, n_p, n_d),
        remote_service_s=remote_s,
        local_service_s=local_s,
    )


def with_overrides(params: PolicyParams, explicit: Mapping[str, Any]) -> PolicyParams:
    """Values written in the deployment file win over derived ones."""
    return replace(params, **dict(explicit)) if explicit else params


def describe_sources(explicit: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    """'t=file, threshold_by_gbps=planner, ...' for the startup line."""
    names = {"threshold_tokens": "t"}
    return ", ".join(f"{names.get(k, k)}={'file' if k in explicit else 'planner'}" for k in keys)
