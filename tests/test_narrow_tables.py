"""Tables of plan, simulate, bench and transfer-bench keep every number whole in a narrow pipe."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from prfaas.bench.report import print_comparison
from prfaas.cli import main
from prfaas.server import FakeBackend, ServerThread, create_app
from prfaas.tables import print_table

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")


def numbers(text: str) -> Counter[str]:
    return Counter(NUMBER.findall(text))


def assert_whole(narrow: str, wide: str) -> None:
    """Same numbers, digit for digit, in the narrow output as in a wide one; nothing elided."""
    assert "…" not in narrow, narrow
    assert numbers(narrow) == numbers(wide), (numbers(wide) - numbers(narrow), narrow)


def test_print_table_falls_back_to_plain_columns_and_keeps_every_digit() -> None:
    table = Table(title="t")
    for col in ("peer", "ok/sent", "Gbit/s (median)", "range"):
        table.add_column(col, justify="left" if col == "peer" else "right")
    table.add_row("prfaas", "1,000/1,000", "19,853.125", "19,850.01–19,861.30")
    outputs = {}
    for width in (40, 200):
        buf = io.StringIO()
        print_table(Console(file=buf, width=width), table)
        outputs[width] = buf.getvalue()
    assert "┃" in outputs[200] and "┃" not in outputs[40]
    assert_whole(outputs[40], outputs[200])


def _cli(columns: int, *args: str) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "prfaas", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


BIG = [
    ("instances = 4 ", "instances = 400 "),
    ("instances = 8 ", "instances = 800 "),
    ("instances = 12 ", "instances = 1200 "),
    ("step_tokens = 100", "step_tokens = 1000"),
]


@pytest.mark.parametrize("big", [False, True])
def test_plan(tmp_path: Path, big: bool) -> None:
    scenario = "paper"
    if big:  # 100x the clusters: wider numbers in every cell
        text = (REPO / "examples" / "paper.toml").read_text()
        for old, new in BIG:
            assert old in text
            text = text.replace(old, new, 1)
        scenario = str(tmp_path / "big.toml")
        Path(scenario).write_text(text)
    plan = ("plan", "--scenario", scenario)
    assert_whole(_cli(60, *plan), _cli(400, *plan))


def test_simulate_compare() -> None:
    args = ("simulate", "--trace", str(DATA / "mini_trace.jsonl"), "--no-progress")
    args += ("--compare", "homogeneous,naive,prfaas-static,prfaas")
    narrow, wide = _cli(60, *args), _cli(400, *args)
    # the run's wall-clock rate (events/s) differs between two runs; everything else must not
    strip = re.compile(r".*events/s.*\n?")
    assert_whole(strip.sub("", narrow), strip.sub("", wide))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = create_app(FakeBackend(token_delay_s=0.0), model_name="m", max_context_tokens=100_000)
    with ServerThread(app) as srv:
        yield srv.url


def test_bench_report(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--url", url, "--workload", "paper", "--rate", "40", "--duration", "0.5"]
    argv += ["--length-scale", "0.001", "--no-progress", "--seed", "3"]
    monkeypatch.setenv("COLUMNS", "40")
    assert main(argv) == 0
    narrow = capsys.readouterr().out
    assert "…" not in narrow, narrow
    # each latency row carries five whole numbers (mean, p50, p90, p99, max) and a count
    rows = [line for line in narrow.splitlines() if line.split()[:1] in (["TTFT"], ["E2E"])]
    assert len(rows) == 2 and all(len(NUMBER.findall(r.split(None, 1)[1])) == 6 for r in rows)


def test_bench_comparison_table() -> None:
    latency = {"p50": 1.98531, "p99": 12.3456789}
    row = {
        "num_ok": 19_853, "num_requests": 20_000, "throughput_rps": 1_234.5678,
        "output_tokens_per_s": 1_985_321.0, "ttft_s": latency, "tpot_s": latency,
        "num_errors": 147,
    }  # fmt: skip
    rows = [("prfaas", row), ("homogeneous", row)]
    outputs = {}
    for width in (60, 300):
        buf = io.StringIO()
        print_comparison(rows, Console(file=buf, width=width))
        outputs[width] = buf.getvalue()
    assert "19853/20000" in outputs[60]
    assert_whole(outputs[60], outputs[300])


def test_transfer_bench(tmp_path: Path) -> None:
    args = ("transfer-bench", "--size", "4MiB", "--connections", "1,2", "--reps", "1")
    args += ("--layers", "4", "--chunk", "1MiB")
    narrow = _cli(60, *args)
    assert "…" not in narrow, narrow
    for line in narrow.splitlines():
        if line.startswith("prfaas"):  # conns, Gbit/s, ratio, retrans, tail, verified, range
            assert re.search(r"\d+\.\d\d–\d+\.\d\d\s*$", line), narrow
