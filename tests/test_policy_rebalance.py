"""Long timescale: re-plan the PD split and t on observed statistics, with hysteresis."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.planner import load_scenario
from prfaas.policy.rebalance import DeploymentState, ObservedStats, RebalanceParams, rebalance
from prfaas.policy.thresholds import best_threshold, threshold_table


@pytest.fixture(scope="module")
def paper():  # type: ignore[no-untyped-def]
    return load_scenario("paper")


def _observed(paper, n: int, output: float, seed: int = 0) -> ObservedStats:  # type: ignore[no-untyped-def]
    lengths = paper.lengths.sample(np.random.default_rng(seed), n)
    return ObservedStats(600.0, tuple(int(x) for x in lengths), output, 100.0)


def test_stationary_workload_keeps_the_planned_configuration(paper) -> None:  # type: ignore[no-untyped-def]
    state = DeploymentState(4, 3, 5, 19_400)
    for seed in range(3):
        d = rebalance(_observed(paper, 3000, 1024, seed), state, RebalanceParams(paper))
        assert not d.changed and d.threshold_tokens == 19_400, d.reason


def test_too_few_samples_keeps(paper) -> None:  # type: ignore[no-untyped-def]
    d = rebalance(
        _observed(paper, 50, 1024), DeploymentState(4, 3, 5, 19_400), RebalanceParams(paper)
    )
    assert not d.changed and "samples" in d.reason


def test_short_outputs_move_decode_nodes_to_prefill_one_at_a_time(paper) -> None:  # type: ignore[no-untyped-def]
    # Outputs 4x shorter: decode has slack, prefill binds, so a decode node becomes prefill.
    d = rebalance(
        _observed(paper, 3000, 256),
        DeploymentState(4, 3, 5, 19_400),
        RebalanceParams(paper, hysteresis=0.05),
    )
    assert d.changes.decode_to_prefill == 1 and d.changes.prefill_to_decode == 0
    assert (d.n_p, d.n_d) == (4, 4)
    assert d.lambda_after is not None and d.lambda_before is not None
    assert d.lambda_after > d.lambda_before * 1.05
    assert "prefill-bound" in d.reason


def test_long_outputs_move_prefill_nodes_to_decode(paper) -> None:  # type: ignore[no-untyped-def]
    d = rebalance(
        _observed(paper, 3000, 2500),
        DeploymentState(4, 3, 5, 19_400),
        RebalanceParams(paper, max_moves=2),
    )
    assert d.changes.prefill_to_decode >= 1 and d.n_d > 5


def test_hysteresis_blocks_small_gains(paper) -> None:  # type: ignore[no-untyped-def]
    stats = _observed(paper, 3000, 900)
    state = DeploymentState(4, 3, 5, 19_400)
    loose = rebalance(stats, state, RebalanceParams(paper, hysteresis=0.0))
    strict = rebalance(stats, state, RebalanceParams(paper, hysteresis=0.5))
    assert not strict.changed
    assert loose.lambda_after is not None and loose.lambda_after >= loose.lambda_before


def test_threshold_table_rises_as_bandwidth_falls(paper) -> None:  # type: ignore[no-untyped-def]
    table = threshold_table(paper, 3, 5)
    gbps = [g for g, _ in table]
    ts = [t for _, t in table]
    assert gbps == sorted(gbps) and gbps[-1] == pytest.approx(100.0)
    assert ts == sorted(ts, reverse=True)
    assert ts[-1] == best_threshold(paper, 3, 5)[0] == 19_400
    assert ts[0] > ts[-1]
