"""Simulated nodes and whole runs: decode admission, KV memory, batching, caches, determinism,
agreement with the planner where its assumptions hold."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from prfaas.core.lifecycle import Phase
from prfaas.core.request import RequestSpec
from prfaas.planner import load_scenario, optimise
from prfaas.policy.params import PolicyParams
from prfaas.profiles import DecodeProfile, LinearKvSize, quadratic
from prfaas.sim import report
from prfaas.sim.bandwidth import BandwidthSchedule
from prfaas.sim.deployments import SimOptions, build_setup
from prfaas.sim.engine import Simulation
from prfaas.sim.runner import RunConfig, make_requests, prepare, run_policies
from prfaas.sim.setup import ClusterSpec, SimSetup
from prfaas.sim.workloads import ArrivalSpec, synthetic_requests

DATA = Path(__file__).parent / "data"
ONE_SECOND = quadratic(0.0, 0.0, 1.0, name="1s", provenance="test")  # T(l) = 1 s
KV = LinearKvSize(fixed_bytes=0.0, bytes_per_token=1000.0, name="kv", provenance="test")


def _local(decode_kv: int, bs_max: int = 4, prefill_nodes: int = 1, chunk: int = 0) -> SimSetup:
    return SimSetup(
        policy="homogeneous",
        params=PolicyParams(),
        clusters=(ClusterSpec("pd", "pd", prefill_nodes, 1, ONE_SECOND, 0),),
        kv=KV,
        decode=DecodeProfile(bs_max=bs_max, t_decode_s=0.1),
        link_gbps=100.0,
        decode_kv_bytes=decode_kv,
        chunk_tokens=chunk,
    )


def _req(i: int, t: float, l_in: int = 1000, out: int = 11) -> RequestSpec:
    return RequestSpec(f"r{i}", t, l_in, out, (), (l_in + out) * 1000)


def test_prefill_fifo_and_decode_step_alignment() -> None:
    res = Simulation(_local(10**9), [_req(0, 0.0), _req(1, 0.0), _req(2, 0.55)]).run()
    r0, r1, r2 = res.records
    assert r0.time(Phase.PREFILLING) == 0.0 and r1.time(Phase.PREFILLING) == pytest.approx(1.0)
    assert r2.time(Phase.PREFILLING) == pytest.approx(2.0)  # waits behind r1 (FIFO)
    assert r0.ttft_s == pytest.approx(1.0)
    # r1's KV arrives at 2.0 while r0 decodes on the grid 1.0, 1.1, ...: admitted on a boundary
    assert r1.time(Phase.DECODING) == pytest.approx(2.0)
    assert r0.time(Phase.FINISHED) == pytest.approx(1.0 + 10 * 0.1)
    assert r0.tpot_s == pytest.approx(0.1) and r1.tpot_s == pytest.approx(0.1)


def test_kv_memory_blocks_admission_until_a_request_finishes() -> None:
    reqs = [_req(0, 0.0, out=21), _req(1, 0.0, out=21)]
    res = Simulation(_local(decode_kv=int(1.5 * 1021 * 1000), prefill_nodes=2), reqs).run()
    a, b = res.records
    assert a.time(Phase.DECODE_QUEUED) == b.time(Phase.DECODE_QUEUED) == pytest.approx(1.0)
    assert b.time(Phase.DECODING) == pytest.approx(a.time(Phase.FINISHED))
    assert b.ttft_s > 2.9


def test_batch_slots_block_admission() -> None:
    reqs = [_req(i, 0.0, out=11) for i in range(3)]
    res = Simulation(_local(10**12, bs_max=2, prefill_nodes=3), reqs).run()
    starts = sorted(r.time(Phase.DECODING) for r in res.records)
    assert starts[:2] == [pytest.approx(1.0)] * 2 and starts[2] == pytest.approx(2.0)


def test_oversized_request_is_rejected_not_dropped() -> None:
    res = Simulation(_local(decode_kv=10_000), [_req(0, 0.0)]).run()
    m = res.metrics()
    assert m["requests"] == {"total": 1, "finished": 0, "rejected": 1, "unfinished": 0}
    assert "decode KV memory" in res.records[0].reason


def test_chunked_batching_pays_the_fixed_overhead_once() -> None:
    reqs = [_req(i, 0.0, l_in=100) for i in range(4)]
    serial = Simulation(_local(10**12), reqs).run()
    chunked = Simulation(_local(10**12, chunk=1000), reqs).run()
    assert max(r.time(Phase.TRANSFERRING) for r in serial.records) == pytest.approx(4.0)
    # the first request starts alone; the three queued behind it run as one batch
    assert max(r.time(Phase.TRANSFERRING) for r in chunked.records) == pytest.approx(2.0)
    assert {r.time(Phase.PREFILLING) for r in chunked.records[1:]} == {1.0}


@pytest.fixture(scope="module")
def paper():  # type: ignore[no-untyped-def]
    scn = load_scenario("paper")
    return scn, optimise(scn)


@pytest.mark.parametrize("policy", ["prfaas-static", "homogeneous", "naive"])
def test_mean_ttft_at_20_percent_load_matches_planner(paper, policy: str) -> None:  # type: ignore[no-untyped-def]
    scn, plan = paper
    key = {"prfaas-static": "prfaas"}.get(policy, policy)
    d = plan.deployments[key]
    setup = build_setup(scn, plan, policy, SimOptions())
    reqs = synthetic_requests(
        scn.lengths,
        1024,
        0.2 * d.lambda_max,
        3000,
        ArrivalSpec("uniform"),
        np.random.default_rng(1),
        scn.kv_size,
    )
    m = Simulation(setup, reqs).run().metrics()
    assert m["ttft_s"]["mean"] == pytest.approx(d.ttft_mean_s, rel=0.05)
    assert m["requests"]["finished"] == 3000


def test_same_seed_gives_byte_identical_json() -> None:
    cfg = RunConfig(
        policies=("prfaas", "naive"),
        rate=2.5,
        requests=800,
        seed=3,
        arrivals=ArrivalSpec("gamma", gamma_cv=2.0),
        options=SimOptions(bandwidth=BandwidthSchedule(((50.0, 150.0, 0.1),))),
    )
    docs = []
    for _ in range(2):
        prep = prepare(cfg)
        docs.append(report.dumps(report.run_doc(prep, run_policies(cfg, prep))))
    assert docs[0] == docs[1]
    other = RunConfig(
        policies=("prfaas", "naive"),
        rate=2.5,
        requests=800,
        seed=4,
        arrivals=ArrivalSpec("gamma", gamma_cv=2.0),
    )
    prep = prepare(other)
    assert report.dumps(report.run_doc(prep, run_policies(other, prep))) != docs[0]


def test_trace_replay_reuses_prefixes_and_pulls_caches() -> None:
    cfg = RunConfig(
        policies=("prfaas", "prfaas-static"), trace=DATA / "mini_trace.jsonl", speedup=2.0
    )
    prep = prepare(cfg)
    results = run_policies(cfg, prep)
    doc = report.run_doc(prep, results)
    for name in ("prfaas", "prfaas-static"):
        m = doc["policies"][name]["metrics"]
        assert m["requests"]["finished"] + m["requests"]["rejected"] == 300
        assert max(m["prefix_hit_rate"].values()) > 0.2
    assert doc["policies"]["prfaas"]["metrics"]["cache_pulls"] > 0
    assert doc["policies"]["prfaas-static"]["metrics"]["cache_pulls"] == 0


def test_bandwidth_drop_shows_in_capacity_series_and_raises_threshold(paper) -> None:  # type: ignore[no-untyped-def]
    scn, plan = paper
    opts = SimOptions(bandwidth=BandwidthSchedule(((100.0, 200.0, 0.1),)))
    setup = build_setup(scn, plan, "prfaas", opts)
    reqs = synthetic_requests(
        scn.lengths, 1024, 2.0, 600, ArrivalSpec("poisson"), np.random.default_rng(0), scn.kv_size
    )
    used: list[tuple[float, int]] = []
    res = Simulation(
        setup, reqs, on_decision=lambda v, s, p: used.append((v.now_s, p.threshold_tokens))
    ).run()
    caps = res.series.link_capacity_gbps["prfaas->pd"]
    assert caps[50] == pytest.approx(100.0) and caps[150] == pytest.approx(10.0)
    inside = [t for now, t in used if 100 <= now < 200]
    outside = [t for now, t in used if now < 100]
    assert min(inside) > 19_400 or np.mean(inside) > np.mean(outside)


def test_rebalancer_converts_a_node_when_outputs_shrink(paper) -> None:  # type: ignore[no-untyped-def]
    scn, plan = paper
    opts = SimOptions(rebalance_period_s=200.0)
    setup = build_setup(scn, plan, "prfaas", opts)
    # Outputs of 128 tokens: decode has lots of slack; prefill binds.
    reqs = synthetic_requests(
        scn.lengths, 128, 2.5, 4000, ArrivalSpec("uniform"), np.random.default_rng(0), scn.kv_size
    )
    res = Simulation(setup, reqs).run()
    assert res.rebalances and "prefill-bound" in str(res.rebalances[0]["reason"])
    assert res.final_deployment["n_p"] > 3 and res.final_deployment["n_d"] < 5
    assert res.metrics()["requests"]["finished"] == 4000


def test_every_request_is_accounted_for_under_overload(paper) -> None:  # type: ignore[no-untyped-def]
    scn, plan = paper
    setup = build_setup(scn, plan, "naive", SimOptions(decode_kv_gib=1.0))
    reqs = synthetic_requests(
        scn.lengths, 1024, 5.0, 500, ArrivalSpec("poisson"), np.random.default_rng(0), scn.kv_size
    )
    m = Simulation(setup, reqs).run().metrics()
    r = m["requests"]
    assert r["finished"] + r["rejected"] == 500 and r["unfinished"] == 0
    assert r["rejected"] > 0  # 1 GiB of decode memory cannot hold the longest prompts
    assert not math.isnan(m["ttft_s"]["p99"])


@pytest.mark.trace
def test_kimi_trace_prefix_hits_and_accounting(conversation_trace: Path) -> None:
    cfg = RunConfig(policies=("naive",), trace=conversation_trace, requests=3000)
    prep = prepare(cfg)
    assert len(make_requests(cfg, prep)) == 3000
    m = report.run_doc(prep, run_policies(cfg, prep))["policies"]["naive"]["metrics"]
    assert m["requests"]["finished"] + m["requests"]["rejected"] == 3000
    # README: 36.6% of blocks were seen before (an upper bound for an unbounded cache)
    assert 0.15 < m["prefix_hit_rate"]["prfaas"] < 0.37
