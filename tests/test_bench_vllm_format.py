"""`prfaas bench --save-result`: vLLM bench-serve JSON keys, consistent with the prfaas report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.bench.client import RequestResult
from prfaas.bench.vllm_format import vllm_result
from prfaas.cli import main
from prfaas.server import FakeBackend, ServerThread, create_app

VLLM_KEYS = {"completed", "failed", "duration", "total_input_tokens", "total_output_tokens",
             "request_throughput", "output_throughput", "total_token_throughput",
             "input_lens", "output_lens", "ttfts", "itls"}


def _keys(metric: str) -> set[str]:
    return {f"{s}_{metric}_ms" for s in ("mean", "median", "std", "p99")}


def test_save_result_has_vllm_keys_and_agrees_with_the_report(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]):
    backend = FakeBackend(token_delay_s=0.001)
    with ServerThread(create_app(backend, model_name="m", max_context_tokens=100_000)) as srv:
        out = tmp_path / "r.json"
        code = main(["bench", "--no-progress", "--json", "--url", srv.url, "--workload", "paper",
                     "--rate", "20", "--duration", "0.5", "--length-scale", "0.002",
                     "--save-result", str(out)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    missing = VLLM_KEYS.union(*(_keys(m) for m in ("ttft", "tpot", "itl", "e2el"))) - set(saved)
    assert not missing
    assert saved["completed"] == report["num_ok"] and saved["failed"] == report["num_errors"]
    assert saved["output_throughput"] == pytest.approx(report["output_tokens_per_s"], rel=1e-6)
    assert saved["mean_ttft_ms"] == pytest.approx(report["ttft_s"]["mean"] * 1000, rel=1e-6)
    assert saved["p99_e2el_ms"] == pytest.approx(report["e2e_s"]["p99"] * 1000, rel=1e-6)


def test_failed_requests_count_and_empty_metrics_are_zero():
    results = [RequestResult(0, 0.0, 10, False, error="connect")]
    report = {"duration_s": 1.0, "model": "m", "offered_rps": 1.0}
    out = vllm_result(report, results)
    assert out["completed"] == 0 and out["failed"] == 1 and out["mean_ttft_ms"] == 0.0


def test_save_result_to_an_unwritable_path_exits_2(tmp_path: Path):
    backend = FakeBackend()
    with ServerThread(create_app(backend, model_name="m", max_context_tokens=100_000)) as srv:
        code = main(["bench", "--no-progress", "--url", srv.url, "--workload", "paper",
                     "--rate", "5", "--duration", "0.2", "--length-scale", "0.002",
                     "--save-result", str(tmp_path / "missing" / "r.json")])
    assert code == 2
