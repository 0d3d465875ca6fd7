"""The chaos harness's accounting (pure) and one short live run of it."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

from live_support import write_config
from prfaas.bench.chaos import (
    classify,
    quantile,
    recovery_s,
    summarise,
    ttft_ratio,
    twin_lines,
)
from prfaas.bench.client import RequestResult

ROOT = Path(__file__).resolve().parents[1]


def _r(i: int, send: float, ok: bool = True, error: str | None = None, detail: str = "",
       text: str = "abc", ttft: float = 0.1) -> RequestResult:
    return RequestResult(i, send, 10, ok, error, detail or None, ttft if ok else None,
                         1.0 if ok else None, 3, (), text)


def test_lost_failed_and_leaky() -> None:
    assert classify(_r(0, 0), "abc").outcome == "ok"
    wrong = classify(_r(0, 0, text="abd"), "abc")
    assert wrong.outcome == "lost" and "first difference at 2" in wrong.why
    assert classify(_r(0, 0, text="ab"), "abc").outcome == "lost"  # truncated but "ok"
    for error in ("timeout", "incomplete", "disconnected", "bad_response"):
        assert classify(_r(0, 0, False, error), "abc").outcome == "lost"
    clean = classify(_r(0, 0, False, "http_503", "no decode capacity left"), None)
    assert clean.outcome == "failed" and not clean.leaky
    leak = classify(_r(0, 0, False, "stream_error", "RpcError: 127.0.0.1:45527"), None)
    assert leak.outcome == "failed" and leak.leaky


def test_recovery_counts_from_the_fault_to_the_last_failure() -> None:
    results = [_r(0, 1.0), _r(1, 5.0, False, "http_503"), _r(2, 7.0, False, "timeout"),
               _r(3, 9.0), _r(4, 12.0)]
    verdicts = [classify(r, None) for r in results]
    assert recovery_s(results, verdicts, 4.0) == pytest.approx(5.0)  # 9.0 - 4.0
    assert recovery_s(results[:3], verdicts[:3], 4.0) is None  # never recovered
    assert recovery_s(results[:1], verdicts[:1], 4.0) == 0.0


def test_ttft_ratio_and_summary() -> None:
    results = [_r(0, 1.0, ttft=0.1), _r(1, 2.0, ttft=0.1), _r(2, 6.0, ttft=0.3)]
    assert ttft_ratio(results, 4.0, (1.0, 6.0)) == pytest.approx(3.0)
    row = summarise("x", results, 4.0, lambda r: "abc")
    assert (row.sent, row.ok, row.failed, row.lost) == (3, 3, 0, 0)


def _harness() -> object:
    spec = importlib.util.spec_from_file_location("chaos", ROOT / "benchmarks" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_quiet_run_loses_nothing_and_every_text_checks(tmp_path: Path) -> None:
    chaos = _harness()
    args = argparse.Namespace(config=write_config(tmp_path), rate=4.0, duration=3.0,
                              fault_at=1.0, output_tokens=24, timeout=30.0, seed=0)
    row = chaos.run_scenario(chaos.SCENARIOS["baseline"], args)  # type: ignore[attr-defined]
    assert row.sent >= 8 and row.ok == row.sent and row.lost == 0, row.examples


def _args(config: Path, **kw: object) -> argparse.Namespace:
    base = {"config": config, "rate": 4.0, "duration": 4.0, "fault_at": 2.0, "output_tokens": 24,
            "timeout": 30.0, "seed": 0, "burst_s": 3.0, "hold_s": 2.0}
    return argparse.Namespace(**{**base, **kw})


@pytest.mark.slow
def test_ci_subset_decode_kill_overload_and_storm_lose_nothing(tmp_path: Path) -> None:
    """The short CI subset (~40 s): a decode node killed mid-stream (every stream resumes), a 3x
    burst against a tight SLO (the excess is shed with 429), a disconnect storm."""
    from test_live_recovery import TWO_DECODE

    chaos = _harness()
    scenarios = chaos.SCENARIOS  # type: ignore[attr-defined]
    config = write_config(tmp_path, TWO_DECODE)
    tight = write_config(tmp_path, TWO_DECODE + "\n[limits]\nttft_slo_s = 0.1\n", "tight.toml")
    kill = chaos.run_scenario(scenarios["kill-decode"], _args(config))  # type: ignore[attr-defined]
    assert kill.lost == 0 and kill.failed == 0 and kill.ok == kill.sent, kill.examples
    over = chaos.run_scenario(scenarios["overload-3x"], _args(tight, rate=8.0))  # type: ignore[attr-defined]
    assert over.lost == 0 and over.failed == 0, over.examples
    assert over.shed >= 1 and over.ok >= 1
    storm = chaos.run_scenario(scenarios["disconnect-storm"], _args(config))  # type: ignore[attr-defined]
    assert storm.lost == 0 and storm.failed == 0, storm.examples
    for row in (kill, over, storm):
        print(chaos._fmt(row))  # type: ignore[attr-defined]


def test_429_quantiles_are_nearest_rank() -> None:
    ms = [float(x) for x in range(1, 201)]  # 1..200 ms
    assert quantile(ms, 0.5) == 100.0 and quantile(ms, 0.99) == 198.0
    assert quantile([7.0, 3.0], 0.99) == 7.0 and quantile([], 0.5) is None
    shed = [RequestResult(i, 0.0, 10, False, "http_429", e2e_s=i / 1000) for i in range(1, 11)]
    row = summarise("x", shed, 0.0, lambda r: None)
    assert (row.shed_ms_p50, row.shed_ms_p99, row.shed_ms_max) == pytest.approx((5.0, 10.0, 10.0))


def test_probe_ratio_is_the_true_median_and_the_twin_comparison_pairs_probes() -> None:
    """Six probes after, eight before: medians of an even count average the middle two; the
    --compare mode divides a run's probes by its --no-fault twin's."""
    before = [RequestResult(i, float(i), 10, True, ttft_s=0.4 + 0.1 * (i % 2)) for i in range(8)]
    after = [RequestResult(10 + i, 20.0 + i, 10, True, ttft_s=t)
             for i, t in enumerate((0.8, 0.9, 0.8, 0.9, 0.8, 0.9))]
    row = summarise("x", before + after, 10.0, lambda r: None,
                    probes=({r.index for r in before}, {r.index for r in after}))
    assert row.probe_ratio == pytest.approx(0.85 / 0.45)
    assert len(row.probe_ttfts_s[0]) == 8 and len(row.probe_ttfts_s[1]) == 6
    chaos = _harness()
    plan = chaos.build_plan(chaos.SCENARIOS["disconnect-storm"], _args(Path("x.toml")))  # type: ignore[attr-defined]
    probes = [r for r in plan if r.hash_ids and r.hash_ids[0] >= chaos.PROBE_BASE]  # type: ignore[attr-defined]
    assert len(probes) == 14 and len({r.hash_ids for r in probes}) == 14
    run = [{"scenario": "s", "probe_ttfts_s": [[0.5], [0.9, 1.1]]}]
    twin = [{"scenario": "s", "probe_ttfts_s": [[0.5], [0.8, 1.2]]}]
    assert "probe x vs no-fault twin 1.00" in twin_lines(run, twin)[0]
    assert "twin -" in twin_lines(run, [])[0]
