"""Restart decisions: backoff doubles while a process keeps crashing, resets once it is stable,
and the budget stops a crash loop."""

from __future__ import annotations

import pytest

from prfaas.deploy.healing import RestartPolicy, RestartState, on_exit, on_started

POLICY = RestartPolicy(first_backoff_s=0.5, max_backoff_s=4.0, budget=4, window_s=60.0,
                       stable_s=30.0)


def test_backoff_doubles_up_to_the_cap_then_the_budget_gives_up() -> None:
    state = RestartState(started_s=0.0)
    now, waits = 1.0, []
    for _ in range(4):
        d = on_exit(POLICY, state, now)
        assert d.restart
        waits.append(d.at_s - now)
        on_started(state, d.at_s)
        now = d.at_s + 0.1  # crashes again at once
    assert waits == pytest.approx([0.5, 1.0, 2.0, 4.0])
    final = on_exit(POLICY, state, now)
    assert not final.restart and "giving up" in final.reason


def test_a_stable_run_resets_the_backoff_and_old_restarts_leave_the_window() -> None:
    state = RestartState(started_s=0.0)
    for _ in range(3):
        d = on_exit(POLICY, state, 1.0)
        on_started(state, d.at_s)
    d = on_exit(POLICY, state, 100.0)  # up for ~95 s: stable, and the old restarts expired
    assert d.restart and d.at_s - 100.0 == pytest.approx(0.5)
    assert len(state.restarts) == 1


def test_bad_policies_are_refused() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(first_backoff_s=5, max_backoff_s=1)
    with pytest.raises(ValueError):
        RestartPolicy(budget=0)
