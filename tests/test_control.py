"""The control core: online profile fits, link-capacity estimates, node choice, startup plan."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from prfaas.control import (
    ControlConfig,
    ControlState,
    LinkSample,
    NodeLoad,
    ObservationWindow,
    PeriodObservation,
    PrefillSample,
    control_step,
)
from prfaas.control.capacity import estimate_link
from prfaas.control.loop import pick_conversions
from prfaas.control.profiling import fit_decode, fit_prefill
from prfaas.deploy.config import parse_deployment
from prfaas.deploy.planning import startup_plan
from prfaas.planner import load_scenario
from prfaas.policy.params import PolicyParams
from prfaas.policy.rebalance import RoleChanges

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "paper-emulated.toml"


@pytest.fixture(scope="module")
def paper():  # type: ignore[no-untyped-def]
    return load_scenario("paper")


def _samples(paper, n: int, scale: float, offset: float, seed: int = 0) -> list[PrefillSample]:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    lengths = paper.lengths.sample(rng, n)
    out = []
    for x in lengths:
        t = scale * float(paper.pd_prefill.time_s(x)) + offset
        out.append(PrefillSample("pd", int(x), t * float(rng.normal(1.0, 0.01))))
    return out


def test_robust_fit_recovers_scale_and_offset_despite_outliers(paper) -> None:  # type: ignore[no-untyped-def]
    samples = _samples(paper, 200, 1.2, 0.05)
    samples[:10] = [PrefillSample("pd", s.tokens, s.duration_s * 20) for s in samples[:10]]
    fit = fit_prefill(samples, paper.pd_prefill, 30)
    assert fit.fitted and fit.samples == 200
    for length in (1_000, 20_000, 100_000):
        want = 1.2 * float(paper.pd_prefill.time_s(length)) + 0.05
        assert float(fit.profile.time_s(length)) == pytest.approx(want, rel=0.03)


def test_too_few_samples_keep_the_configured_profile(paper) -> None:  # type: ignore[no-untyped-def]
    fit = fit_prefill(_samples(paper, 10, 2.0, 0.0), paper.pd_prefill, 30)
    assert not fit.fitted and fit.profile is paper.pd_prefill
    decode, fitted = fit_decode([0.03] * 5, paper.decode, 30)
    assert not fitted and decode == paper.decode
    decode, fitted = fit_decode([0.03] * 40, paper.decode, 30)
    assert fitted and decode.t_decode_s == pytest.approx(0.03)


def test_link_estimate_is_the_window_mean_or_the_saturated_goodput() -> None:
    assert estimate_link([], 100.0).source == "configured"
    idle = [LinkSample(100.0, 10.0, 0)] * 5 + [LinkSample(10.0, 5.0, 0)] * 5
    assert estimate_link(idle, 100.0).gbps == pytest.approx(55.0)
    # Backlogged and moving only 40 Gbit/s through a nominal 100: the goodput is the capacity.
    busy = [LinkSample(100.0, 40.0, int(5e9))] * 10
    est = estimate_link(busy, 100.0)
    assert est.source == "goodput" and est.gbps == pytest.approx(40.0)


def test_conversions_take_the_least_loaded_node_and_never_the_last() -> None:
    nodes = (
        NodeLoad("p0", "prefill", 5.0),
        NodeLoad("p1", "prefill", 1.0),
        NodeLoad("d0", "decode", 0.0),
    )
    state = ControlState(1, nodes, 100)
    assert pick_conversions(state, RoleChanges(prefill_to_decode=1)) == (("p1", "decode"),)
    assert pick_conversions(state, RoleChanges(prefill_to_decode=5)) == (("p1", "decode"),)
    assert pick_conversions(state, RoleChanges(decode_to_prefill=1)) == ()


def test_no_decision_while_a_node_converts(paper) -> None:  # type: ignore[no-untyped-def]
    nodes = tuple(NodeLoad(f"p{i}", "prefill", 0.0) for i in range(3)) + tuple(
        NodeLoad(f"d{i}", "decode", 0.0) for i in range(5)
    )
    obs = PeriodObservation(60.0, (2000,) * 500, (4000,) * 500)
    cfg = ControlConfig(paper, min_samples=100)
    state = ControlState(4, nodes, 19_400)
    _, decision = control_step(ObservationWindow(), obs, state, cfg, PolicyParams())
    assert decision is not None and decision.conversions  # decode-bound: a prefill node moves
    busy = ControlState(4, nodes, 19_400, converting=True)
    window, decision = control_step(ObservationWindow(), obs, busy, cfg, PolicyParams())
    assert decision is None and len(window.periods) == 1


def test_startup_plan_says_where_each_value_came_from() -> None:
    doc = tomllib.loads(EXAMPLE.read_text())
    planned = startup_plan(parse_deployment(doc))
    assert planned.params.threshold_tokens == 19_400  # the planner's optimum for the 3/5 split
    assert "t=planner" in planned.line and planned.params.threshold_by_gbps
    doc["policy"]["params"] = {"threshold_tokens": 5000}
    pinned = startup_plan(parse_deployment(doc))
    assert pinned.params.threshold_tokens == 5000 and "t=file" in pinned.line
    # The planner's table, scaled so the full-rate entry is the pinned t (a slower link still
    # raises t by the planner's factor, from the file's t).
    table = pinned.params.threshold_by_gbps
    assert table[-1] == (100.0, 5000) and table[0][1] > 5000
    ratio = planned.params.threshold_by_gbps[0][1] / 19_400
    assert table[0][1] == pytest.approx(5000 * ratio, abs=1)
    doc["control"] = {"plan": False}
    off = startup_plan(parse_deployment(doc))
    assert off.decision is None and off.params.threshold_by_gbps == ()


def test_estimates_are_exported_with_their_sample_counts(paper) -> None:  # type: ignore[no-untyped-def]
    from prfaas.control.loop import estimate_summary, estimates
    from prfaas.server.metrics import ServerMetrics

    obs = PeriodObservation(
        60.0, prefill=tuple(_samples(paper, 50, 1.1, 0.0)), link=(LinkSample(80.0, 1.0),) * 7
    )
    window = ObservationWindow().push(obs, 4)
    summary = estimate_summary(*estimates(window, ControlConfig(paper)))
    assert summary["pd_prefill_samples"] == 50 and summary["pd_prefill_fitted"]
    assert summary["pd_prefill_scale"] == pytest.approx(1.1, rel=0.05)
    assert summary["prfaas_prefill_samples"] == 0 and not summary["prfaas_prefill_fitted"]
    assert (summary["link_gbps"], summary["link_samples"]) == (80.0, 7)
    metrics = ServerMetrics()
    metrics.set_control(summary)
    text = metrics.exposition()[0].decode()
    assert 'control_estimate{name="pd_prefill_samples"} 50.0' in text
