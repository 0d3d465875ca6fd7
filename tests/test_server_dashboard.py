"""/dashboard: the state JSON, and the page rendered by headless Chromium (screenshot artifact)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from prfaas.server import FakeBackend, SampleDashboardSource, ServerThread, create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "out" / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
KEYS = {"time_s", "policy", "threshold_tokens", "offload_fraction", "links", "nodes", "decisions"}


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0

    def __call__(self) -> float:
        self.now += 1.0  # every snapshot is one second later: a moving, reproducible page
        return self.now


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(
        FakeBackend(),
        model_name="dash-model",
        max_context_tokens=512,
        dashboard=SampleDashboardSource(clock=FrozenClock()),
    )
    with ServerThread(app) as srv:
        yield srv.url


def test_state_has_the_documented_shape(url: str) -> None:
    state: dict[str, Any] = httpx.get(f"{url}/dashboard/state").json()
    assert KEYS | {"model"} <= set(state) and state["model"] == "dash-model"
    assert {n["name"] for n in state["nodes"]} == {"prfaas-p0", "pd-p0", "pd-d0"}
    assert {"name", "egress_gbps", "capacity_gbps"} <= set(state["links"][0])
    assert {"request_id", "prefill", "decode", "reason"} <= set(state["decisions"][0])


def test_state_without_source_is_empty_but_valid() -> None:
    app = create_app(FakeBackend(), model_name="m", max_context_tokens=64)
    with ServerThread(app) as srv:
        state = httpx.get(f"{srv.url}/dashboard/state").json()
        page = httpx.get(f"{srv.url}/dashboard")
    assert set(state) >= KEYS and state["nodes"] == [] and state["policy"] is None
    assert page.status_code == 200 and "<script>" in page.text


def test_page_is_self_contained(url: str) -> None:
    html = httpx.get(f"{url}/dashboard").text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "no external resources"
    assert "/state" in html and "setTimeout(poll" in html


def chromium(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "--virtual-time-budget=4000",
            *args,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_dashboard_renders_in_headless_chromium(url: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    result = chromium(f"--screenshot={shot}", f"{url}/dashboard")
    assert shot.exists() and shot.stat().st_size > 10_000, result.stderr[-2000:]
    dom = chromium("--dump-dom", f"{url}/dashboard").stdout
    (ARTIFACTS / "dashboard.dom.html").write_text(dom)
    for name in ("prfaas-p0", "pd-p0", "pd-d0"):  # node table rows filled by the JS
        assert f"<td>{name}</td>" in dom
    assert re.search(r"<td>cmpl-\d{6}</td>", dom), "routing decisions rendered"
    assert 'id="status" class="live"' in dom
    assert re.search(r'id="threshold">19,400<', dom)
    assert "<polyline" in dom  # the egress chart drew its lines
