"""The long-timescale loop: rebalance decisions from observations, and draining role switches."""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_support import EMULATED_TOML, SHORT_PROMPT, complete, state, write_config
from prfaas.deploy.config import parse_deployment
from prfaas.deploy.planning import control_config, scenario_from_deployment
from prfaas.deploy.supervisor import Deployment
from prfaas.router.backend import RouterBackend
from prfaas.router.rebalancer import Rebalancer


def _two_by_two() -> Any:
    doc = tomllib.loads(EMULATED_TOML)
    doc["clusters"][1]["nodes"] = [
        {"name": "pd-p", "count": 2, "role": "prefill", "hardware": "H20"},
        {"name": "pd-d", "count": 2, "role": "decode", "hardware": "H20"},
    ]
    return parse_deployment(doc)


def _config(cfg: Any, min_samples: int) -> Any:
    scn = scenario_from_deployment(cfg)
    assert scn is not None
    return replace(control_config(cfg, scn), min_samples=min_samples)


def test_decode_bound_window_converts_a_prefill_node_and_retunes_t() -> None:
    cfg = _two_by_two()

    async def scenario() -> tuple[dict[str, Any] | None, list[tuple[str, str]], int]:
        backend = RouterBackend(cfg)
        for rec in backend.members.nodes.values():
            rec.alive, rec.url = True, "http://unused"
        moves: list[tuple[str, str]] = []

        async def change_role(node: str, role: str) -> None:
            moves.append((node, role))

        backend.change_role = change_role  # type: ignore[method-assign]
        rb = Rebalancer(backend, _config(cfg, 50))
        backend.observed.inc.extend([2000] * 100)  # short prompts ...
        backend.observed.out.extend([4000] * 100)  # ... long answers: decode is the bottleneck
        record = await rb.step(1.0)
        await asyncio.sleep(0)
        return record, moves, backend.params.threshold_tokens

    record, moves, t = asyncio.run(scenario())
    assert record is not None and "decode-bound" in record["reason"]
    assert (record["n_p"], record["n_d"]) == (1, 3)
    assert moves == [("pd-p0", "decode")]
    assert t == record["threshold_tokens"]


def test_too_few_samples_change_nothing() -> None:
    cfg = _two_by_two()

    async def scenario() -> dict[str, Any] | None:
        backend = RouterBackend(cfg)
        rb = Rebalancer(backend, _config(cfg, 500))
        backend.observed.inc.extend([2000] * 10)
        backend.observed.out.extend([4000] * 10)
        return await rb.step(1.0)

    assert asyncio.run(scenario()) is None


def test_transformers_deployments_have_no_static_profile_the_warmup_pass_plans_them() -> None:
    local = Path(__file__).resolve().parents[1] / "examples" / "local.toml"
    from prfaas.deploy.config import load_deployment

    assert scenario_from_deployment(load_deployment(local)) is None


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(write_config(tmp_path))
    dep.start(timeout_s=60)
    try:
        yield dep
    finally:
        dep.stop()


@pytest.mark.slow
def test_role_switches_drain_without_dropping_a_request(deployment: Deployment) -> None:
    url = deployment.url
    streamed: list[str] = []
    started = threading.Event()

    def long_stream() -> None:
        body = {
            "model": "emu-model",
            "prompt": SHORT_PROMPT,
            "max_tokens": 2000,
            "temperature": 0,
            "stream": True,
        }
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as resp:
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    streamed.append(line)
                    started.set()

    reader = threading.Thread(target=long_stream)
    reader.start()
    assert started.wait(20)
    # pd-p0 (idle) becomes a second decode node; then pd-d0, which is streaming, becomes a prefill
    # node: its switch waits until that stream has finished.
    for node, role in (("pd-p0", "decode"), ("pd-d0", "prefill")):
        assert reader.is_alive()  # the stream is still running on pd-d0
        body = {"node": node, "role": role}
        resp = deployment.control("POST", "/internal/role", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
    reader.join(30)
    assert not reader.is_alive()
    assert '"finish_reason":"length"' in streamed[-1].replace(" ", "")
    text = "".join(line.split('"text":"', 1)[1].split('"', 1)[0] for line in streamed)
    assert len(text) == 2000  # every token arrived (emulated tokens are single characters)
    nodes = state(deployment)["nodes"]
    assert nodes["pd-p0"]["role"] == "decode" and nodes["pd-d0"]["role"] == "prefill"  # type: ignore[index]
    resp = complete(url, SHORT_PROMPT)  # the swapped cluster still serves
    assert resp.status_code == 200, resp.text
    decision = httpx.get(f"{url}/dashboard/state").json()["decisions"][0]
    assert (decision["prefill"], decision["decode"]) == ("pd-d0", "pd-p0")
