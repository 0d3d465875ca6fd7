"""`prfaas simulate` end to end: JSON stability, comparison table, errors, max-rate search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prfaas.cli import main

DATA = Path(__file__).parent / "data"


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_is_byte_identical_for_the_same_seed(capsys: pytest.CaptureFixture[str]) -> None:
    args = (
        "--rate",
        "2",
        "--requests",
        "400",
        "--arrivals",
        "poisson",
        "--seed",
        "5",
        "--compare",
        "homogeneous,prfaas",
        "--json",
        "--no-progress",
    )
    first = _run(capsys, *args)
    second = _run(capsys, *args)
    assert first[0] == 0 and first[1] == second[1]
    doc = json.loads(first[1])
    assert doc["schema"] == 1 and list(doc["policies"]) == ["homogeneous", "prfaas"]
    m = doc["policies"]["prfaas"]["metrics"]
    for key in (
        "requests",
        "throughput",
        "ttft_s",
        "tpot_s",
        "slo",
        "offload_fraction",
        "egress",
        "queue_depth",
        "waiting",
        "prefix_hit_rate",
        "cross_cluster_cache_bytes",
    ):
        assert key in m
    assert doc["policies"]["homogeneous"]["deployment"] == {
        "n_prfaas": 0,
        "n_p": 9,
        "n_d": 3,
        "threshold_tokens": 0,
    }


def test_compare_prints_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--trace",
        str(DATA / "mini_trace.jsonl"),
        "--no-progress",
        "--compare",
        "homogeneous,naive,prfaas-static,prfaas",
    )
    assert code == 0
    rows = [line.split()[0] for line in out.splitlines()[3:7]]
    assert rows == ["homogeneous", "naive", "prfaas-static", "prfaas"]
    assert "events/s" in out


def test_unknown_policy_lists_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "--policy", "fast", "--rate", "1")
    assert code == 2
    assert "unknown policy 'fast'" in err and "homogeneous, naive, prfaas-static, prfaas" in err


def test_malformed_trace_line_names_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = (DATA / "mini_trace.jsonl").read_text().splitlines()[:20]
    lines[6] = '{"timestamp": 1, "input_length": "many"}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = _run(capsys, "--trace", str(bad), "--no-progress")
    assert code == 2 and "bad.jsonl:7" in err and "Traceback" not in err
    code, out, _ = _run(capsys, "--trace", str(bad), "--skip-bad-lines", "--json", "--no-progress")
    doc = json.loads(out)
    assert code == 0
    assert doc["workload"]["skipped_lines"] == 1 and doc["workload"]["skipped_line_numbers"] == [7]
    assert doc["policies"]["prfaas"]["metrics"]["requests"]["total"] == 19


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[10, 5, 0.1]]", "start_s < end_s"),
        ("[[0, 10, 0.5], [5, 20, 0.1]]", "overlap"),
        ('[{"start_s": 0, "end_s": 1}]', "start_s, end_s, factor"),
        ("not json", "cannot parse"),
    ],
)
def test_bad_bandwidth_schedule(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "sched.json"
    path.write_text(content)
    code, _, err = _run(capsys, "--rate", "1", "--bandwidth-schedule", str(path))
    assert code == 2 and message in err


def test_toml_schedule_and_missing_rate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "sched.toml"
    path.write_text("[[windows]]\nstart_s = 10\nend_s = 20\nfactor = 0.1\n")
    code, out, _ = _run(
        capsys,
        "--rate",
        "2",
        "--requests",
        "100",
        "--bandwidth-schedule",
        str(path),
        "--json",
        "--no-progress",
    )
    assert code == 0 and json.loads(out)["workload"]["bandwidth_schedule"] == [[10.0, 20.0, 0.1]]
    code, _, err = _run(capsys, "--requests", "100")
    assert code == 2 and "--rate" in err


def test_find_max_rate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        capsys,
        "--find-max-rate",
        "--policy",
        "naive",
        "--requests",
        "1500",
        "--rate",
        "2",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    found = doc["policies"]["naive"]["find_max_rate"]
    assert doc["criterion"]["backlog_fraction"] == 0.01
    # Small probes are noisy; the acceptance run uses 20,000 requests (docs/results.md).
    assert 0.85 < found["stable_vs_planner"] < 1.1
    assert found["max_rate"] <= found["max_stable_rate"]
    assert any(not p["bounded"] for p in found["probes"])


def test_plot_writes_pngs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = _run(
        capsys,
        "--rate",
        "2",
        "--requests",
        "200",
        "--compare",
        "prfaas,naive",
        "--plot",
        str(tmp_path),
        "--no-progress",
    )
    assert code == 0
    for name in ("ttft_cdf.png", "egress_timeline.png", "queue_timeline.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_seeds_and_window_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sched = tmp_path / "drop.json"
    sched.write_text("[[100, 200, 0.1]]")
    code, out, _ = _run(
        capsys,
        "--rate",
        "2",
        "--requests",
        "400",
        "--arrivals",
        "onoff",
        "--compare",
        "prfaas-static,prfaas",
        "--bandwidth-schedule",
        str(sched),
        "--window",
        "100:260",
        "--seeds",
        "2",
        "--json",
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["seeds"] == [0, 1] and len(doc["runs"]) == 2
    assert set(doc["summary"]["prfaas"]) == {"run", "window"}
    window = doc["runs"][0]["policies"]["prfaas"]["window"]
    assert window["start_s"] == 100.0 and window["metrics"]["requests"]["total"] > 0
    per_seed = [r["policies"]["prfaas"]["metrics"]["ttft_s"]["p90"] for r in doc["runs"]]
    assert doc["summary"]["prfaas"]["run"]["ttft_p90_s"] == pytest.approx(sum(per_seed) / 2)
    code, _, err = _run(capsys, "--rate", "2", "--window", "5")
    assert code == 2 and "START:END" in err
