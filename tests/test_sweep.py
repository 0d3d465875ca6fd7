"""`prfaas sweep`: grid parsing, grid points applied to scenarios, and the same rows whichever
executor ran them (this process, a local process pool, a local two-worker Ray cluster)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prfaas.errors import UsageError
from prfaas.planner import load_scenario
from prfaas.sweep.grid import Axis, apply, parse_axis, phi_kv_gbps, points
from prfaas.sweep.run import SweepSpec, local_executor, ray_executor, run_sweep

SRC = Path(__file__).resolve().parents[1] / "src"


def test_axes_parse_lists_log_ranges_and_models() -> None:
    assert parse_axis("link_gbps=10,100").values == (10.0, 100.0)
    assert parse_axis("link_gbps=log:1:1000:4").values == (1.0, 10.0, 100.0, 1000.0)
    assert parse_axis("scale=2").values == (2,)
    models = parse_axis("model=all").values
    assert len(models) == 17 and not any(str(m).endswith("-tiny") for m in models)
    grid = points([parse_axis("link_gbps=1,2"), parse_axis("kv_scale=1,2,3")])
    assert len(grid) == 6 and grid[1] == {"link_gbps": 1.0, "kv_scale": 2.0}


@pytest.mark.parametrize(
    "text",
    ["link_gbps", "bogus=1", "link_gbps=-5", "link_gbps=ten", "model=nope", "link_gbps=log:1:2"],
)
def test_bad_axes_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_axis(text)


def test_points_change_the_scenario_as_named() -> None:
    base = load_scenario("paper")
    big = apply(base, {"scale": 10, "link_gbps": 50.0})
    assert (big.prfaas_instances, big.pd_instances, big.homogeneous_instances) == (40, 80, 120)
    assert big.link_gbps == 50.0
    doubled = apply(base, {"kv_scale": 2.0})
    assert phi_kv_gbps(doubled, 32_768) == pytest.approx(2 * phi_kv_gbps(base, 32_768))
    dense = apply(base, {"model": "qwen3-235b-a22b"})
    hybrid = apply(base, {"model": "qwen3.5-397b-a17b"})
    assert phi_kv_gbps(dense, 32_768) > 2 * phi_kv_gbps(hybrid, 32_768)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


SPEC = SweepSpec(
    scenario="paper",
    points=tuple(points([parse_axis("link_gbps=10,100"), parse_axis("kv_scale=1,3")])),
    simulate=True,
    policies=("homogeneous", "prfaas"),
    seeds=(0, 1),
    requests=150,
    sim_options={"rebalance_period_s": None},
)


@pytest.fixture(scope="module")
def in_process() -> list[dict[str, Any]]:
    return run_sweep(SPEC, local_executor(1))


def test_rows_cover_the_grid_and_respond_to_it(in_process: list[dict[str, Any]]) -> None:
    assert len(in_process) == 8  # 4 points x 2 seeds
    by = {(r["link_gbps"], r["kv_scale"], r["seed"]): r for r in in_process}
    # 3x the KV bytes on a 10 Gbps link: the link binds and PrfaaS-PD loses most of its gain.
    slow_big = by[(10.0, 3.0, 0)]["ratio_prfaas_vs_homogeneous"]
    assert slow_big < by[(100.0, 3.0, 0)]["ratio_prfaas_vs_homogeneous"]
    assert by[(10.0, 1.0, 0)]["sim"]["prfaas"]["throughput_rps"] > 0
    assert by[(10.0, 1.0, 0)]["sim"] != by[(10.0, 1.0, 1)]["sim"]  # seeds differ


def test_local_process_pool_gives_the_same_rows(in_process: list[dict[str, Any]]) -> None:
    pooled = run_sweep(SPEC, local_executor(2))
    assert all(_same(a, b) for a, b in zip(in_process, pooled, strict=True))


@pytest.mark.slow
def test_ray_cluster_gives_the_same_rows(in_process: list[dict[str, Any]]) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'prfaas[sweep]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # two worker slots
    try:
        on_ray = run_sweep(SPEC, ray_executor("auto"))
    finally:
        ray.shutdown()
    assert all(_same(a, b) for a, b in zip(in_process, on_ray, strict=True))


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "prfaas", "sweep", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=240,
    )


def test_cli_writes_table_json_and_plot(tmp_path: Path) -> None:
    out = _cli(
        "--axis",
        "link_gbps=10,100",
        "--axis",
        "model=ring-2.5-1t,qwen3-235b-a22b",
        "--workers",
        "1",
        "--json",
        "s.json",
        "--plot",
        "s.png",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("| link_gbps | model |") and out.stdout.count("\n") == 6
    doc = json.loads((tmp_path / "s.json").read_text())
    assert len(doc["rows"]) == 4 and doc["axes"] == ["link_gbps", "model"]
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    no_ray = ("--axis", "link_gbps=10", "--ray", "127.0.0.1:1")  # nothing listens: no hang
    for args in (("--axis", "nope=1"), (), no_ray):
        out = _cli(*args, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_table3_models_land_where_the_paper_says() -> None:
    """Paper §2: on a 512-GPU H200 PrfaaS cluster dense models need far more than 100 Gbps,
    Ring-2.5-1T about 170 Gbps."""
    links = (100.0, 1000.0, 10000.0)
    models = ("minimax-m2.5-229b", "qwen3-235b-a22b", "ring-2.5-1t")
    spec = SweepSpec(
        points=tuple(
            points([parse_axis("scale=16"), Axis("link_gbps", links), Axis("model", models)])
        )
    )
    rows = run_sweep(spec, local_executor(1))
    ratio = {(r["model"], r["link_gbps"]): r["ratio_prfaas_vs_homogeneous"] for r in rows}
    for dense in models[:2]:
        best = max(ratio[(dense, g)] for g in links)
        assert ratio[(dense, 100.0)] < 1.0 < best  # loses on 100 Gbps, pays off with enough link
        assert ratio[(dense, 1000.0)] < 0.9 * best  # most of the gain needs more than 1 Tbps
    assert ratio[("ring-2.5-1t", 100.0)] > 1.5
