"""Same seed -> same metrics as the simulator recorded before the issue-15 speed work."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sim_baseline_cases import BASELINE, cases

REL = 1e-6
# The fixture also records the kernel's event count, which includes superseded link timers: an
# implementation detail the speed work changes on purpose (fewer timers), not a result.
NOT_RESULTS = {"events"}


def _compare(path: str, got: Any, want: Any, errors: list[str]) -> None:
    if isinstance(want, dict):
        if not isinstance(got, dict) or set(got) != set(want):
            errors.append(f"{path}: keys {sorted(got) if isinstance(got, dict) else got!r}")
            return
        for key in want:
            if key in NOT_RESULTS:
                continue
            _compare(f"{path}.{key}", got[key], want[key], errors)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            errors.append(f"{path}: {got!r} != {want!r}")
            return
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare(f"{path}[{i}]", g, w, errors)
    elif isinstance(want, float) and isinstance(got, int | float):
        if not (
            math.isclose(got, want, rel_tol=REL, abs_tol=1e-9) or (got != got and want != want)
        ):
            errors.append(f"{path}: {got!r} != {want!r}")
    elif got != want:
        errors.append(f"{path}: {got!r} != {want!r}")


@pytest.fixture(scope="module")
def now() -> dict[str, Any]:
    # Through JSON so tuples/lists and NaN compare the way the fixture stores them.
    return json.loads(json.dumps(cases()))


@pytest.mark.parametrize("case", ["paper-poisson", "paper-drop", "mini-trace", "paper-10x"])
def test_metrics_match_the_recorded_baseline(now: dict[str, Any], case: str) -> None:
    want = json.loads(BASELINE.read_text(encoding="utf-8"))[case]
    errors: list[str] = []
    _compare(case, now[case], want, errors)
    assert not errors, "\n".join(errors[:20])


def test_paper_100x_example_is_the_paper_scaled() -> None:
    from dataclasses import replace
    from pathlib import Path

    from prfaas.planner import load_scenario

    root = Path(__file__).resolve().parents[1] / "examples"
    paper, big = load_scenario(root / "paper.toml"), load_scenario(root / "paper-100x.toml")
    assert (big.prfaas_instances, big.pd_instances, big.homogeneous_instances) == (400, 800, 1200)
    assert big.link_gbps == 100 * paper.link_gbps
    assert big.bandwidth_sweep_gbps == tuple(100 * g for g in paper.bandwidth_sweep_gbps)
    scaled = replace(
        paper,
        name=big.name,
        description=big.description,
        prfaas_instances=400,
        pd_instances=800,
        homogeneous_instances=1200,
        link_gbps=big.link_gbps,
        bandwidth_sweep_gbps=big.bandwidth_sweep_gbps,
    )
    assert repr(scaled) == repr(big)  # profiles, workload, decode and KV are the paper's
