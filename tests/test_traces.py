"""Bundled traces: found by name from any folder, read compressed, overridable, clear if missing."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prfaas.errors import UsageError
from prfaas.workload.trace import read_trace
from prfaas.workload.traces import BUNDLED_TRACES_DIR, bundled_trace, resolve_trace

ROWS = [
    {"timestamp": 0, "input_length": 1000, "output_length": 10, "hash_ids": [1, 2]},
    {"timestamp": 500, "input_length": 2000, "output_length": 20, "hash_ids": [1, 2, 3, 4]},
]


def _write(path: Path, compress: bool) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    path.write_bytes(gzip.compress(text) if compress else text)
    return path


def test_the_kimi_trace_ships_with_its_notice() -> None:
    path = bundled_trace()
    assert path.parent == BUNDLED_TRACES_DIR and path.name.endswith(".jsonl.gz")
    notice = (BUNDLED_TRACES_DIR / "NOTICE").read_text()
    assert "Apache" in notice and "3cca71daccf2a7afb8fe3f0295358f70e3a69fdb" in notice
    assert path.stat().st_size < 1_000_000  # compressed, ~790 KB


@pytest.mark.parametrize("compress", [False, True])
def test_plain_and_gzip_traces_read_the_same(tmp_path: Path, compress: bool) -> None:
    data = read_trace(_write(tmp_path / "t.jsonl", compress))
    assert [r.input_length for r in data.requests] == [1000, 2000]
    assert data.requests[1].timestamp_s == pytest.approx(0.5)


def test_corrupt_gzip_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"timestamp": 0}\n' * 100)[:40])
    with pytest.raises(UsageError, match="cannot read trace"):
        read_trace(bad)


def test_names_aliases_and_the_override_folder(tmp_path: Path) -> None:
    assert resolve_trace("kimi-conversation") == bundled_trace()
    assert resolve_trace("conversation_trace.jsonl", traces_dir=tmp_path) == bundled_trace()
    # An uncompressed original in the override folder wins over the bundled copy.
    mine = _write(tmp_path / "conversation_trace.jsonl", compress=False)
    assert resolve_trace("kimi-conversation", traces_dir=tmp_path) == mine
    with pytest.raises(UsageError, match="kimi-conversation"):
        resolve_trace("no-such-trace", traces_dir=tmp_path)


def test_simulate_by_name_from_another_folder(tmp_path: Path) -> None:
    # The default traces location must not depend on the current directory.
    env = {k: v for k, v in os.environ.items() if k != "PRFAAS_TRACES_DIR"}
    cmd = [sys.executable, "-m", "prfaas", "simulate", "--trace", "kimi-conversation",
           "--requests", "300", "--policy", "naive", "--json", "--no-progress"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["workload"]["kind"] == "trace" and doc["workload"]["requests"] == 300
