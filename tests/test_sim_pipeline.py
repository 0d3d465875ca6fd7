"""The live pipeline's latency outside the modelled stages: measured from a live decision log,
and applied by the simulator where a request's KV reaches its decode node."""

from __future__ import annotations

from pathlib import Path

import pytest

from prfaas.bench.run import BenchSettings
from prfaas.bench.simlive import Decided, pipeline_latency_s, simulate
from prfaas.deploy.config import load_deployment

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "paper-emulated.toml"


def _decided(i: int, detail: dict[str, object], decode: str = "d0") -> Decided:
    return Decided(i, 100, False, "pd", "p0", decode, "", 0, 0.1, {}, detail)


def _live(i: int, routed: float, first: float | None, queue: float, transfer: float) -> Decided:
    detail = {
        "routed_at_s": routed,
        "first_token_at_s": first,
        "queue_s": queue,
        "transfer_s": transfer,
    }
    return _decided(i, detail)


def test_latency_is_the_median_time_outside_every_modelled_stage() -> None:
    live = {
        0: _live(0, 10.0, 10.512, 0.1, 0.4),  # 12 ms outside queue, prefill and transfer
        1: _live(1, 11.0, 11.310, 0.0, 0.3),  # 10 ms
        2: _live(2, 12.0, 12.950, 0.5, 0.3),  # 150 ms, 140 of them waiting to join the batch
        3: _live(3, 13.0, None, 0.0, 0.3),  # never reached its first token: left out
        4: _live(4, 14.0, 14.9, 0.0, 0.3),  # another decode node than simulated: left out
    }
    sim = {i: _decided(i, {"admit_s": 0.0}) for i in range(4)}
    sim[2] = _decided(2, {"admit_s": 0.140})
    sim[4] = _decided(4, {"admit_s": 0.0}, decode="d1")
    assert pipeline_latency_s(live, sim) == pytest.approx(0.010)
    assert pipeline_latency_s({}, sim) == pytest.approx(0.0)


def test_the_simulator_delays_each_decode_by_the_pipeline_latency() -> None:
    cfg = load_deployment(EXAMPLE)
    plan = BenchSettings(4.0, workload="paper", rate_rps=1.0).plan()  # light: no queues
    base, _ = simulate(cfg, "prfaas", plan)
    later, _ = simulate(cfg, "prfaas", plan, pipeline_s=0.010)
    assert set(base) == set(later)
    for i in base:
        assert base[i].ttft_s is not None and later[i].ttft_s is not None
        assert later[i].ttft_s - base[i].ttft_s == pytest.approx(0.010, abs=1e-6)
