"""sim_vs_live --replay: the plan re-timed to when the live router routed each request."""

from __future__ import annotations

import pytest

from prfaas.bench.simlive import Decided, replayed
from prfaas.bench.workload import PlannedRequest


def _req(i: int, at: float) -> PlannedRequest:
    return PlannedRequest(i, at, (i,), 100, 4, 16)


def _live(i: int, routed_at: float) -> Decided:
    return Decided(i, 100, False, "pd", "p0", "d0", "", 0, 0.1, {}, {"routed_at_s": routed_at})


def test_replay_keeps_the_routing_times_relative_to_the_least_delayed_request() -> None:
    plan = [_req(0, 0.0), _req(1, 0.02), _req(2, 0.04)]
    live = {0: _live(0, 500.010), 1: _live(1, 500.075), 2: _live(2, 500.050)}  # 1 routed after 2
    out = replayed(plan, live)
    assert [r.index for r in out] == [0, 2, 1]  # the order the router saw
    assert [r.send_at_s for r in out] == pytest.approx([0.0, 0.04, 0.065])


def test_replay_leaves_requests_without_a_live_decision_at_their_planned_time() -> None:
    plan = [_req(0, 0.0), _req(1, 0.5)]
    out = replayed(plan, {0: _live(0, 7.003)})
    assert [(r.index, r.send_at_s) for r in out] == [(0, 0.0), (1, 0.5)]
    assert replayed(plan, {}) == plan
