"""`prfaas bench` against a FakeBackend server: counts, prefix sharing, percentiles, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from prfaas.bench.client import run_plan
from prfaas.bench.prompts import shared_prefix_tokens
from prfaas.bench.stats import RunInfo, build_report
from prfaas.bench.workload import Shaping, trace_plan
from prfaas.cli import main
from prfaas.server import BackendUnavailable, FakeBackend, ServerThread, create_app
from prfaas.server.backend import CompletionRequest, TokenChunk


class RecordingBackend(FakeBackend):
    """FakeBackend that keeps every prompt it was asked to continue."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.prompts: list[str] = []

    def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        self.prompts.append(req.prompt_text)
        return super().generate(req)


@pytest.fixture(scope="module")
def backend() -> RecordingBackend:
    return RecordingBackend(token_delay_s=0.001)


@pytest.fixture(scope="module")
def url(backend: RecordingBackend) -> Iterator[str]:
    with ServerThread(create_app(backend, model_name="m", max_context_tokens=100_000)) as srv:
        yield srv.url


TRACE = [  # (timestamp ms, input, output, hash_ids): two conversations sharing block 0
    (0, 1000, 5, [0, 1]),
    (100, 1400, 3, [0, 1, 2]),
    (200, 700, 4, [0, 3]),
    (300, 300, 2, [4]),
    (5000, 900, 2, [0, 1]),  # after the --duration window at --speedup 1
]


def write_trace(path: Path) -> Path:
    lines = [
        json.dumps({"timestamp": t, "input_length": i, "output_length": o, "hash_ids": h})
        for t, i, o, h in TRACE
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["bench", "--no-progress", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_trace_replay_counts_and_prefix_sharing(
    url: str, backend: RecordingBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_trace(tmp_path / "t.jsonl")
    backend.prompts.clear()
    code, report = run_json(
        capsys, "--url", url, "--trace", str(trace), "--duration", "1", "--tokens-per-block", "32"
    )
    assert code == 0
    assert report["num_requests"] == 4 and report["num_ok"] == 4  # the 5 s request is outside
    assert report["mean_output_tokens"] == pytest.approx((5 + 3 + 4 + 2) / 4)
    prompts = sorted(backend.prompts, key=len)
    by_len = {len(p): p for p in prompts}
    assert sorted(by_len) == [round(n * 32 / 512) for n in (300, 700, 1000, 1400)]
    p1000, p1400, p700, p300 = by_len[62], by_len[88], by_len[44], by_len[19]
    assert shared_prefix_tokens(p1000, p1400) == 62  # [0, 1] is a prefix of [0, 1, 2]
    assert 32 <= shared_prefix_tokens(p1000, p700) < 64  # only block 0 in common
    assert shared_prefix_tokens(p300, p1000) < 32


def test_paper_workload_sends_the_planned_count(
    url: str, backend: RecordingBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    before = backend.num_started
    code, report = run_json(
        capsys,
        "--url",
        f"{url}/v1/",
        "--workload",
        "paper",
        "--rate",
        "40",
        "--duration",
        "0.5",
        "--length-scale",
        "0.002",
        "--output-tokens",
        "3",
    )
    assert code == 0
    assert report["num_requests"] == 20 and report["num_ok"] == 20
    assert backend.num_started - before == 20
    assert report["offered_rps"] == pytest.approx(40)
    assert report["workload"]["kind"] == "paper" and report["mean_output_tokens"] == 3
    assert report["ttft_s"]["count"] == 20 and report["tpot_s"]["count"] == 20


def test_report_percentiles_match_numpy_on_real_results(url: str, tmp_path: Path) -> None:
    plan = trace_plan(
        write_trace(tmp_path / "t.jsonl"),
        speedup=10,
        duration_s=100,
        limit=None,
        shaping=Shaping(tokens_per_block=16),
    )
    results, wall = asyncio.run(run_plan(url, plan, model="m", endpoint="chat", timeout_s=30))
    assert all(r.ok for r in results) and len(results) == 5
    report = build_report(RunInfo(url, "m", "chat", {}, 0), results, wall, 0.5)
    ttfts = [r.ttft_s or 0.0 for r in results]
    for q in (50, 90, 99):
        assert report["ttft_s"][f"p{q}"] == pytest.approx(np.percentile(ttfts, q))
    tpots = [r.tpot_s or 0.0 for r in results]
    assert report["tpot_s"]["p50"] == pytest.approx(np.percentile(tpots, 50))
    assert report["e2e_s"]["max"] == pytest.approx(max(r.e2e_s or 0 for r in results))


def test_errors_are_counted_by_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(
        FakeBackend(fail_after_tokens=0, fail_with=BackendUnavailable),
        model_name="m",
        max_context_tokens=10_000,
    )
    with ServerThread(app) as srv:
        code, report = run_json(
            capsys,
            "--url",
            srv.url,
            "--workload",
            "paper",
            "--rate",
            "20",
            "--duration",
            "0.25",
            "--length-scale",
            "0.001",
        )
    assert code == 1 and report["num_ok"] == 0 and report["errors"] == {"http_503": 5}
    with ServerThread(
        create_app(FakeBackend(fail_after_tokens=2), model_name="m", max_context_tokens=10_000)
    ) as srv:
        _, report = run_json(
            capsys,
            "--url",
            srv.url,
            "--workload",
            "paper",
            "--rate",
            "20",
            "--duration",
            "0.1",
            "--output-tokens",
            "5",
            "--length-scale",
            "0.001",
        )
    assert report["errors"] == {"stream_error": 2}


def test_unreachable_url_exits_2_without_traceback() -> None:
    cmd = [
        sys.executable,
        "-m",
        "prfaas",
        "bench",
        "--url",
        "http://127.0.0.1:9",
        "--workload",
        "paper",
        "--rate",
        "1",
        "--duration",
        "1",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "cannot reach http://127.0.0.1:9" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "localhost:8000", "--workload", "paper", "--rate", "1"], "http://"),
        (["--url", "http://127.0.0.1:9"], "give a workload"),
        (["--url", "http://127.0.0.1:9", "--workload", "paper"], "--rate"),
        (["--url", "http://127.0.0.1:9", "--trace", "/nonexistent.jsonl"], "trace file not found"),
        (["--url", "http://127.0.0.1:9", "--workload", "paper", "--rate", "-1"], "--rate"),
        (["--workload", "paper", "--rate", "1"], "--url is required"),
        (["--compare", "a,b", "--workload", "paper", "--rate", "1"], "--config"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--duration", "1", *argv]) == 2
    assert message in capsys.readouterr().err


def test_non_openai_server_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    with ServerThread(FastAPI()) as srv:
        code = main(
            ["bench", "--url", srv.url, "--workload", "paper", "--rate", "1", "--duration", "1"]
        )
    assert code == 2 and "not an OpenAI-compatible server" in capsys.readouterr().err


class ShedOnceBackend(FakeBackend):
    """Sheds every request's first attempt (429, Retry-After: 1), serves the second."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def generate(self, req: CompletionRequest) -> AsyncIterator[TokenChunk]:
        from prfaas.server.backend import Overloaded

        if req.prompt_text not in self.seen:
            self.seen.add(req.prompt_text)

            async def shed() -> AsyncIterator[TokenChunk]:
                raise Overloaded("the prefill queue is full", 0.2, "node_queue")
                yield TokenChunk("")

            return shed()
        return super().generate(req)


def test_429s_are_counted_apart_and_retried_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--workload", "paper", "--rate", "20", "--duration", "0.25", "--length-scale",
            "0.001", "--output-tokens", "3"]
    with ServerThread(create_app(ShedOnceBackend(), model_name="m",
                                 max_context_tokens=10_000)) as srv:
        code, report = run_json(capsys, "--url", srv.url, *argv)
        assert code == 1 and report["num_shed"] == 5 and report["num_429"] == 5
        assert report["errors"] == {"http_429": 5}
    with ServerThread(create_app(ShedOnceBackend(), model_name="m",
                                 max_context_tokens=10_000)) as srv:
        code, report = run_json(capsys, "--url", srv.url, "--retry-429", *argv)
    assert code == 0 and report["num_ok"] == 5 and report["num_shed"] == 0
    assert report["num_429"] == 5  # each waited out its Retry-After (1 s) once
    assert report["e2e_s"]["max"] < 1.0  # latency counts from the accepted attempt
