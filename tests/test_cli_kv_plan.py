"""`prfaas kv` and `prfaas plan` through the CLI entry point (in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prfaas.cli import main
from prfaas.commands.kv import parse_lengths
from prfaas.errors import UsageError


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_kv_json_reports_state_spec_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["kv", "--model", "qwen3.5-397b-a17b", "--json"])
    assert out["bytes_per_token"] == 30_720
    assert out["fixed_bytes"] == 192_061_440
    assert [row["tokens"] for row in out["lengths"]] == [1024, 8192, 32768, 131072]
    # README cross-check: S_kv(32,768) = 1,198,694,400 B for Qwen3.5-397B
    assert out["lengths"][2]["kv_bytes"] == 1_198_694_400


def test_kv_compare_shows_hybrid_reduction(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["kv", "--model", "qwen3.5-397b-a17b", "--compare", "qwen3-235b-a22b"]
    out = _json(capsys, [*argv, "--lengths", "32K", "--json"])
    row = out["compare"]["lengths"][0]
    assert row["kv_bytes"] == 6_308_233_216  # README: Qwen3-235B at 32,768 tokens
    assert row["reduction"] == pytest.approx(6_308_233_216 / 1_198_694_400)
    assert main(argv) == 0
    assert "reduction" in capsys.readouterr().out


def test_kv_state_bytes_option(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["kv", "--model", "ring-2.5-1t", "--state-bytes", "2", "--json"])
    assert out["fixed_bytes"] == 146_800_640


def test_kv_list(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys, ["kv", "--list", "--json"])
    assert len(rows) >= 17 and any(r["model"] == "kimi-linear-48b" for r in rows)
    assert main(["kv", "--list"]) == 0
    assert "mimo-v2-flash-309b" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["kv"], ["kv", "--model", "nope"], ["kv", "--model", "llama-3.1-70b", "--lengths", "1X"]],
)
def test_kv_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prfaas kv: error:") and "\n" not in err


def test_parse_lengths() -> None:
    assert parse_lengths("1K, 8k,100000,0.5K") == [1024, 8192, 100_000, 512]
    with pytest.raises(UsageError):
        parse_lengths("0")


def test_plan_table_reports_the_optimum(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--scenario", "paper"]) == 0
    out = capsys.readouterr().out
    assert "19,400" in out and "4 / 3 / 5" in out and "— / 9 / 3" in out
    assert "Bandwidth sweep" in out and "INFERRED" in out


def test_plan_json_for_a_file_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "paper-10gbps.toml"
    out = _json(capsys, ["plan", "--scenario", str(example), "--json"])
    assert out["scenario"] == "paper-10gbps"
    assert out["deployments"]["prfaas"]["threshold_tokens"] > 19_400


def test_plan_writes_three_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--scenario", "paper", "--json", "--plot", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout stays pure JSON; the paths go to stderr
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["bandwidth_sweep.png", "fig5a_split_sweep.png", "fig5b_threshold_sweep.png"]
    for name in names:
        assert (tmp_path / "p" / name).read_bytes()[:4] == b"\x89PNG"
    assert "fig5a_split_sweep.png" in captured.err
