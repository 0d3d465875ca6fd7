"""The transformers engine's startup plan: warm-up samples -> fitted profiles -> the planner's t."""

from __future__ import annotations

import asyncio
import re
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from prfaas.control.warmup import (
    FlopShape,
    WarmupSamples,
    fit_to_context,
    fit_warmup,
    scale_prior,
    warmup_lengths,
)
from prfaas.control.window import PrefillSample
from prfaas.deploy.config import parse_deployment
from prfaas.deploy.planning import flop_shape, startup_plan, warmup_wanted
from prfaas.planner import load_scenario
from prfaas.workload.lengths import EmpiricalLengths

LOCAL = Path(__file__).resolve().parents[1] / "examples" / "local.toml"
LENGTHS = (64, 256, 1024, 2048)


def _local(**control: Any) -> Any:
    doc = tomllib.loads(LOCAL.read_text())
    doc.setdefault("control", {}).update(control)
    return doc


def _true_time(shape: FlopShape, scale: float, offset: float) -> Any:
    return lambda n: scale * float(shape.time_s(n)) + offset


def _samples(speed: dict[str, float], steps: int = 23, outlier: bool = False) -> WarmupSamples:
    """Two repeats per length and role from T(l) = speed * shape(l) + 5 ms, one 10x outlier."""
    shape = flop_shape(parse_deployment(_local()))
    out = []
    for role, scale in speed.items():
        t = _true_time(shape, scale, 0.005)
        out += [PrefillSample(role, n, t(n)) for _ in range(2) for n in LENGTHS]
    if outlier:
        out[0] = replace(out[0], duration_s=out[0].duration_s * 10)
    return WarmupSamples(tuple(out), (0.003,) * steps, 2.4, 8192)


def test_the_fit_recovers_each_roles_curve_despite_an_outlier() -> None:
    shape = flop_shape(parse_deployment(_local()))
    assert shape.quadratic > 0 and shape.linear > 0  # the preset's FLOP terms
    fits = fit_warmup(_samples({"prfaas": 0.08, "pd": 0.12}, outlier=True), shape, 8, True)
    assert fits is not None and fits.prfaas.samples == 8 and fits.prfaas.fitted
    for fit, scale in ((fits.prfaas, 0.08), (fits.pd, 0.12)):
        true = _true_time(shape, scale, 0.005)
        for n in (*LENGTHS, 8192):  # 8192: extrapolated along the FLOP shape
            assert float(fit.profile.time_s(n)) == pytest.approx(true(n), rel=0.05)
    assert fits.decode.t_decode_s == pytest.approx(0.003) and fits.decode.bs_max == 8


def test_too_little_to_fit_gives_no_profiles() -> None:
    shape = flop_shape(parse_deployment(_local()))
    only_pd = _samples({"pd": 0.1})
    assert fit_warmup(only_pd, shape, 8, has_prfaas=True) is None
    assert fit_warmup(only_pd, shape, 8, has_prfaas=False) is not None
    assert fit_warmup(_samples({"prfaas": 0.1, "pd": 0.1}, steps=0), shape, 8, True) is None


def test_the_prior_is_fitted_to_the_context_or_scaled_as_written() -> None:
    paper = load_scenario("paper")
    fitted, factor = fit_to_context(paper, 8192)
    assert 0 < factor < 1
    assert fitted.lengths.max_tokens + fitted.output_tokens == pytest.approx(8192, rel=1e-6)
    assert fitted.lengths.mean == pytest.approx(paper.lengths.mean * factor, rel=1e-3)
    assert fitted.output_tokens == pytest.approx(paper.output_tokens * factor)
    assert fit_to_context(paper, 1 << 20) == (paper, 1.0)  # already fits: unchanged
    trace = load_scenario("kimi-conversation")
    assert isinstance(trace.lengths, EmpiricalLengths)
    demo = scale_prior(trace, 1 / 32)  # the demo's replay: 16 tokens per 512-token block
    assert demo.lengths.mean == pytest.approx(trace.lengths.mean / 32, rel=1e-3)
    assert warmup_lengths(8192, LENGTHS) == LENGTHS and warmup_lengths(1024, LENGTHS) == (64, 256)


def test_the_startup_plan_uses_the_warmup_and_an_explicit_t_still_wins() -> None:
    doc = _local()
    cfg = parse_deployment(doc)
    assert warmup_wanted(cfg)
    waiting = startup_plan(cfg)
    assert waiting.decision is None and "planned after its warm-up pass" in waiting.line
    samples = _samples({"prfaas": 0.1, "pd": 0.1})
    plan = startup_plan(cfg, samples)
    assert plan.decision is not None
    t = plan.params.threshold_tokens
    assert t == plan.decision.threshold_tokens and f"t={t}," in plan.line
    assert re.search(r"planned from warm-up \(39 samples, 2\.4 s\)", plan.line), plan.line
    assert "t=planner" in plan.line and plan.params.threshold_by_gbps
    assert 0 < plan.params.local_service_s < plan.params.remote_service_s  # short vs long
    # A slower PD prefill node: the planner sends more to PrfaaS (t falls).
    slow_pd = startup_plan(cfg, _samples({"prfaas": 0.1, "pd": 0.3}))
    assert slow_pd.params.threshold_tokens < t
    doc["policy"]["params"]["threshold_tokens"] = 256
    pinned = startup_plan(parse_deployment(doc), samples)
    assert pinned.params.threshold_tokens == 256 and "t=file" in pinned.line
    assert pinned.params.remote_service_s == pytest.approx(plan.params.remote_service_s)  # planned


def test_a_warmup_that_times_out_keeps_the_file_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from prfaas.router import warmup
    from prfaas.router.backend import RouterBackend

    async def hang(_b: Any) -> WarmupSamples:
        await asyncio.sleep(3600)
        raise AssertionError

    async def ready(_b: Any) -> bool:
        return True

    monkeypatch.setattr(warmup, "measure", hang)
    monkeypatch.setattr(warmup, "wait_for_nodes", ready)
    doc = _local(warmup_s=0.2)
    doc["policy"]["params"]["threshold_tokens"] = 300

    async def run() -> RouterBackend:
        backend = RouterBackend(parse_deployment(doc))
        assert backend.warmup == "pending"
        await asyncio.wait_for(warmup.run_warmup(backend), 10)
        await backend.close()
        return backend

    backend = asyncio.run(run())
    assert backend.warmup == "failed" and backend.threshold_tokens == 300
    assert "warm-up timed out after 0.2 s" in backend.plan_line, backend.plan_line


def test_emulated_and_planner_off_deployments_need_no_warmup() -> None:
    assert not warmup_wanted(parse_deployment(_local(plan=False)))
    assert not warmup_wanted(parse_deployment(_local(warmup_s=0)))
    doc = _local()
    doc["policy"]["name"] = "naive"
    assert not warmup_wanted(parse_deployment(doc))
    assert np.isfinite(float(flop_shape(parse_deployment(doc)).time_s(1024)))


def test_a_replica_that_joined_a_running_deployment_follows_its_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from prfaas.router import warmup
    from prfaas.router.backend import RouterBackend

    async def never(_b: Any) -> WarmupSamples:
        raise AssertionError("a follower measures nothing")

    async def ready(_b: Any) -> bool:
        return True

    monkeypatch.setattr(warmup, "measure", never)
    monkeypatch.setattr(warmup, "wait_for_nodes", ready)

    async def run() -> RouterBackend:
        backend = RouterBackend(parse_deployment(_local()))
        backend.cluster = SimpleNamespace(policy=SimpleNamespace(joined=True), is_leader=True)
        await warmup.run_warmup(backend)
        await backend.close()
        return backend

    backend = asyncio.run(run())
    assert backend.warmup == "followed" and "policy record" in backend.plan_line


def test_up_warns_when_the_warmup_did_not_plan(capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from prfaas.commands.up import _announce

    line = "control: warm-up timed out after 20 s; t=19400 (file/default)"
    dep = SimpleNamespace(
        cfg=parse_deployment(_local()), router_urls=["http://x"], procs={}, pki_dir=None,
        planned={"warmup": "failed", "startup": line}, plan_line=line,
    )  # fmt: skip
    _announce("http://x", dep)
    out, err = capsys.readouterr()
    assert f"warning: {line}" in err and "control:" not in out
    dep.plan_line = "control: planned"
    dep.planned = {"warmup": "done", "startup": dep.plan_line}
    _announce("http://x", dep)
    assert "control: planned" in capsys.readouterr().out


def test_the_rebalancer_starts_from_the_warmup_scenario() -> None:
    from prfaas.router.backend import RouterBackend
    from prfaas.router.rebalancer import make_rebalancer

    async def run() -> Any:
        backend = RouterBackend(parse_deployment(_local()))
        assert make_rebalancer(backend).config is None  # nothing to plan on before the warm-up
        samples = _samples({"prfaas": 0.1, "pd": 0.2})
        backend.apply_startup(startup_plan(backend.cfg, samples), samples)
        await backend.close()
        return make_rebalancer(backend).config

    config = asyncio.run(run())
    assert config is not None and config.scenario.pd_prefill.provenance == "online fit"
    slower = float(config.scenario.pd_prefill.time_s(1024))
    assert slower == pytest.approx(2 * float(config.scenario.prfaas_prefill.time_s(1024)), rel=0.1)
