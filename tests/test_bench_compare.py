"""run_compare: one fresh deployment per policy (a FakeBackend server here), one table, a plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from rich.console import Console

from prfaas.bench.compare import parse_policies, run_compare
from prfaas.bench.run import BenchSettings
from prfaas.bench.workload import Shaping
from prfaas.errors import UsageError
from prfaas.server import FakeBackend, ServerThread, create_app

DELAYS_S = {"homogeneous": 0.004, "prfaas": 0.0}


class FakeDeployments:
    """A starter that serves FakeBackend with a per-policy token delay and records its calls."""

    def __init__(self) -> None:
        self.started: list[tuple[Path, str]] = []
        self.stopped: list[str] = []

    def __call__(self, config: Path, policy: str) -> tuple[str, Callable[[], None]]:
        self.started.append((config, policy))
        app = create_app(
            FakeBackend(token_delay_s=DELAYS_S.get(policy, 0.0)),
            model_name=policy,
            max_context_tokens=50_000,
        )
        if policy == "broken":
            app = FastAPI()  # not an OpenAI server: the bench fails, the deployment must stop
        srv = ServerThread(app).start()

        def stop() -> None:
            srv.stop()
            self.stopped.append(policy)

        return srv.url, stop


SETTINGS = BenchSettings(
    duration_s=0.3,
    workload="paper",
    rate_rps=20,
    length_scale=0.002,
    shaping=Shaping(output_tokens=4),
)


def test_compare_runs_each_policy_on_its_own_deployment(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text("# fake\n")
    starter = FakeDeployments()
    console = Console(record=True, width=140)
    plot = tmp_path / "cmp.png"
    rows = run_compare(
        ["homogeneous", "prfaas"],
        config,
        starter,
        SETTINGS,
        console=console,
        plot_path=plot,
        progress=False,
    )
    assert starter.started == [(config, "homogeneous"), (config, "prfaas")]
    assert starter.stopped == ["homogeneous", "prfaas"]
    assert [p for p, _ in rows] == ["homogeneous", "prfaas"]
    for policy, report in rows:
        assert report["model"] == policy and report["num_ok"] == report["num_requests"] == 6
    # sleep() never returns early: 4 tokens take at least 3 token delays end to end
    assert rows[0][1]["e2e_s"]["p50"] >= 3 * DELAYS_S["homogeneous"]
    text = console.export_text()
    assert "policy comparison" in text and "homogeneous" in text and "prfaas" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deployment_is_stopped_when_the_bench_fails(tmp_path: Path) -> None:
    starter = FakeDeployments()
    with pytest.raises(UsageError, match="not an OpenAI-compatible server"):
        run_compare(
            ["broken"], tmp_path, starter, SETTINGS, console=Console(quiet=True), progress=False
        )
    assert starter.stopped == ["broken"]


def test_parse_policies() -> None:
    assert parse_policies("homogeneous, naive,prfaas") == ["homogeneous", "naive", "prfaas"]
    for bad in ("", " , ", "a,a"):
        with pytest.raises(UsageError):
            parse_policies(bad)
