"""`kill -9` of `prfaas up` itself: the reaper stops every child and removes the run folder."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live_support import process_gone, write_config
from prfaas.deploy.reaper import Orders, clean


def test_orders_are_read_line_by_line_and_done_dismisses() -> None:
    orders = Orders()
    for line in ("pgid 12\n", "path /tmp/x\n", "netns-owner 7\n", "pgid nope\n", "bogus\n"):
        orders.read(line)
    assert (orders.pgids, orders.paths, orders.netns_owners, orders.done) == (
        [12], ["/tmp/x"], [7], False)
    orders.read("done")
    assert orders.done


def test_clean_kills_groups_and_removes_folders(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    folder = tmp_path / "run"
    (folder / "pki").mkdir(parents=True)
    (folder / "pki" / "ca.key").write_text("k")
    secret = tmp_path / "secret"
    secret.write_text("s")
    clean(Orders(pgids=[child.pid], paths=[str(folder), str(secret)]), grace_s=1.0)
    assert child.wait(timeout=5) == -signal.SIGTERM
    assert not folder.exists() and not secret.exists()


@pytest.mark.slow
def test_kill_9_of_prfaas_up_leaves_no_process_and_no_run_folder(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    up = subprocess.Popen(
        [sys.executable, "-m", "prfaas", "up", "--config", str(write_config(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    out, run_dir = [], None
    try:
        assert up.stdout is not None
        for line in up.stdout:
            out.append(line)
            if m := re.search(r"certificates in (\S+)/pki", line):
                run_dir = Path(m.group(1))
            if "Ctrl-C stops" in line:
                break
        assert run_dir is not None and run_dir.is_dir(), "".join(out)
        ready = [json.loads(f.read_text()) for f in run_dir.glob("*.json")]
        pids = [r["pid"] for r in ready if isinstance(r, dict)]  # not the WAN's relay list
        assert len(pids) == 5  # wan, router, 3 nodes
    finally:
        up.kill()  # SIGKILL: no handler, no finally in prfaas up runs
        up.wait()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10 and (run_dir.exists() or
                                          not all(process_gone(p) for p in pids)):
        time.sleep(0.1)
    gone_s = time.monotonic() - t0
    print(f"after kill -9 of prfaas up: clean in {gone_s:.2f} s")
    assert not run_dir.exists(), f"{run_dir} still there after {gone_s:.1f} s"
    assert all(process_gone(p) for p in pids), [p for p in pids if not process_gone(p)]
    assert gone_s <= 5.0
