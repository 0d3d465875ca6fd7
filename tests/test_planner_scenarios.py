"""Scenario files: the built-in scenarios, inline profiles, and every bad field's one-line error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from prfaas.errors import ConfigError, InfeasibleError
from prfaas.planner import optimise
from prfaas.planner.scenario import BUILTIN_DIR, parse_scenario

REPO = Path(__file__).resolve().parents[1]


def _run_plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prfaas", "plan", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def test_builtin_scenarios_equal_the_examples() -> None:
    for name in ("paper", "paper-10gbps"):
        assert (BUILTIN_DIR / f"{name}.toml").read_text() == (
            REPO / "examples" / f"{name}.toml"
        ).read_text()


def _doc(**sections: dict[str, Any]) -> dict[str, Any]:
    import tomllib

    doc = tomllib.loads((BUILTIN_DIR / "paper.toml").read_text())
    for key, value in sections.items():
        doc[key] = {**doc[key], **value}
    return doc


def test_inline_profiles_and_model_kv() -> None:
    doc = _doc(
        prfaas={"prefill": {"kind": "fit", "tokens": [1000, 8000, 32000, 128000],
                            "seconds": [0.44, 0.72, 1.84, 7.40]}},
        pd={"prefill": {"kind": "roofline", "model": "qwen3.5-397b-a17b", "mfu": 0.3}},
        kv={"profile": None},
    )  # fmt: skip
    doc["kv"] = {"model": "qwen3.5-397b-a17b"}
    scn = parse_scenario(doc, source="inline", base_dir=REPO)
    assert scn.prfaas_prefill.time_s(45_046) == pytest.approx(4 / 1.6096, rel=1e-3)
    assert "ROOFLINE" in scn.pd_prefill.provenance
    assert scn.kv_size.bytes(1000) == 30_720 * 1000 + 192_061_440
    assert optimise(scn).stages["prfaas"].lambda_max > 0


def test_homogeneous_size_defaults_to_equal_gpu_count() -> None:
    doc = _doc()
    del doc["homogeneous"]
    assert parse_scenario(doc, source="x", base_dir=REPO).homogeneous_instances == 12


def test_nested_unknown_field_is_named() -> None:
    doc = _doc(pd={"prefill": {"kind": "quadratic", "a2": 1e-10, "a1": 1e-4, "a0": 0.4, "a3": 1}})
    with pytest.raises(ConfigError, match=r"pd\.prefill\.a3"):
        parse_scenario(doc, source="x", base_dir=REPO)


def test_a_missing_field_is_not_blamed_on_a_similar_real_one() -> None:
    doc = _doc()
    del doc["workload"]["min_tokens"]  # max_tokens is unread at that point and looks alike
    with pytest.raises(ConfigError, match=r"'workload\.min_tokens' is missing"):
        parse_scenario(doc, source="x", base_dir=REPO)


def test_one_homogeneous_instance_is_infeasible() -> None:
    with pytest.raises(InfeasibleError):
        parse_scenario(_doc(homogeneous={"instances": 1}), source="x", base_dir=REPO)


PAPER_TEXT = (BUILTIN_DIR / "paper.toml").read_text()


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("instances = 8 ", "# removed ", "pd.instances"),
        ("gbps = 100 ", "gbps = -5 ", "link.gbps"),
        ("bs_max = 20 ", 'bs_max = "twenty" ', "decode.bs_max"),
        ("[pd]\n", "[pd]\ninstanses = 3\n", "pd.instanses"),
        ("instances = 8 ", "instanses = 8 ", "'pd.instanses' is not a known field"),
        ("gbps = 100 ", "gpbs = 100 ", "'link.gpbs' is not a known field"),
        ("mu = 9.90", "mu = 9.90\nmean = 3", "workload.mean"),
        ('hardware = "H20"', 'hardware = "H2O"', "pd.hardware"),
        ("instances = 8 ", "instances = 0 ", "decode instance"),
        ("[link]", "[link", "invalid TOML"),
        # grids too large to search end in one line, not a traceback or an out-of-memory kill
        ("max_tokens = 131072", "max_tokens = 1e11", "workload.max_tokens"),
        ("max_tokens = 131072", "max_tokens = 1e300", "workload.max_tokens"),
        ("max_tokens = 131072", "max_tokens = inf", "workload.max_tokens"),
        ("max_tokens = 131072", "max_tokens = nan", "workload.max_tokens"),
        ("instances = 8 ", "instances = 100000000 ", "pd.instances"),
        ("instances = 12 ", "instances = 10000000000 ", "homogeneous.instances"),
    ],
)
def test_bad_scenarios_exit_2_with_one_line(
    tmp_path: Path, old: str, new: str, needle: str
) -> None:
    assert old in PAPER_TEXT
    path = tmp_path / "bad.toml"
    path.write_text(PAPER_TEXT.replace(old, new, 1))
    proc = _run_plan("--scenario", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert needle in err


def test_missing_scenario_file_exits_2() -> None:
    proc = _run_plan("--scenario", "no/such/file.toml")
    assert proc.returncode == 2 and "paper" in proc.stderr and "\n" not in proc.stderr.strip()


def test_a_degenerate_optimum_is_called_the_naive_deployment(tmp_path: Path) -> None:
    # 16 H200 PrfaaS instances out-prefill what 8 H20 decode instances can consume: the best
    # PrfaaS-PD configuration offloads everything and every PD instance decodes.
    path = tmp_path / "big-prfaas.toml"
    assert "instances = 4 " in PAPER_TEXT
    path.write_text(PAPER_TEXT.replace("instances = 4 ", "instances = 16 ", 1))
    out = json.loads(_run_plan("--scenario", str(path), "--json").stdout)
    best, naive = out["deployments"]["prfaas"], out["deployments"]["naive"]
    assert (best["threshold_tokens"], best["n_p"]) == (0, 0)
    assert best["lambda_max"] == pytest.approx(naive["lambda_max"], rel=1e-9)
    assert out["prfaas_is_naive"] is True
    table = _run_plan("--scenario", str(path))
    assert table.returncode == 0, table.stderr
    assert "PrfaaS-PD (= naive)" in table.stdout
    assert "degenerates to the naive deployment" in " ".join(table.stdout.split())
    assert "degenerates" not in _run_plan("--scenario", "paper").stdout
