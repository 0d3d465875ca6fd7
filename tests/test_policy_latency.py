"""Latency-aware side choice: spare capacity is used at low load, t governs under pressure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prfaas.control.params import derive_params
from prfaas.planner import load_scenario
from prfaas.policy import PolicyParams, route
from test_policy_routing import prefill, req, view


@pytest.fixture(scope="module")
def planned() -> PolicyParams:
    return derive_params(load_scenario("paper"), 3, 5, 19_400)


def _remote(busy: int) -> tuple:  # type: ignore[type-arg]
    return tuple(
        prefill(f"prfaas-0{i}", 1 if i < busy else 0, 40_000 if i < busy else 0) for i in range(4)
    )


def test_an_idle_prfaas_cluster_takes_short_requests(planned: PolicyParams) -> None:
    p = route(view(remote=_remote(0)), req(8_000), planned, "prfaas")
    assert p.prefill_cluster == "prfaas" and "latency" in p.reason
    off = route(view(remote=_remote(0)), req(8_000), replace(planned, latency_routing=False))
    assert off.prefill_cluster == "pd"  # the paper's rule: short stays local


def test_t_governs_when_prfaas_has_no_spare_node(planned: PolicyParams) -> None:
    # Three of four PrfaaS nodes busy: the last idle one is kept for the long requests.
    p = route(view(remote=_remote(3)), req(8_000), planned, "prfaas")
    assert p.prefill_cluster == "pd" and "latency" not in p.reason


def test_t_governs_near_link_saturation(planned: PolicyParams) -> None:
    p = route(view(remote=_remote(0), egress=95.0), req(8_000), planned, "prfaas")
    assert p.prefill_cluster == "pd"


def test_a_long_request_goes_local_when_that_is_faster(planned: PolicyParams) -> None:
    # Every PrfaaS node holds 60K queued tokens; PD-P is idle: a request just above t finishes
    # sooner there, a much longer one still goes to PrfaaS.
    busy = tuple(prefill(f"prfaas-0{i}", 1, 60_000) for i in range(4))
    p = route(view(remote=busy), req(30_000), planned, "prfaas")
    assert p.prefill_cluster == "pd" and "latency" in p.reason
    assert route(view(remote=busy), req(60_000), planned, "prfaas").prefill_cluster == "prfaas"


def test_without_planned_profiles_the_rule_is_off() -> None:
    p = route(view(remote=_remote(0)), req(8_000), PolicyParams(threshold_tokens=19_400))
    assert p.prefill_cluster == "pd"


def test_smooth_arrivals_let_short_requests_use_the_last_idle_node(planned: PolicyParams) -> None:
    # Same state as above (one PrfaaS node idle), but recent arrivals are evenly spaced.
    smooth = replace(view(remote=_remote(3)), arrival_cv=0.2)
    p = route(smooth, req(8_000), planned, "prfaas")
    assert p.prefill_cluster == "prfaas" and "latency" in p.reason
    clumped = replace(view(remote=_remote(3)), arrival_cv=3.0)
    assert route(clumped, req(8_000), planned, "prfaas").prefill_cluster == "pd"
    # The threshold is a knob: with it at 0 even smooth arrivals keep the reserve.
    strict = replace(planned, latency_reserve_cv=0.0)
    assert route(smooth, req(8_000), strict, "prfaas").prefill_cluster == "pd"


def test_a_negative_reserve_cv_is_refused() -> None:
    with pytest.raises(ValueError, match="latency_reserve_cv"):
        PolicyParams(latency_reserve_cv=-1.0)
