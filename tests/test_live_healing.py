"""A worker killed with SIGKILL is restarted by the supervisor and serves again within seconds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from live_support import LONG_PROMPT, SHORT_PROMPT, complete, state, write_config
from prfaas.deploy.healer import Healer
from prfaas.deploy.healing import RestartPolicy
from prfaas.deploy.supervisor import Deployment


def _record(dep: Deployment, node: str) -> dict[str, object]:
    return state(dep)["nodes"][node]  # type: ignore[index,no-any-return]


@pytest.mark.slow
def test_killed_workers_are_restarted_and_serve_again(tmp_path: Path) -> None:
    dep = Deployment(write_config(tmp_path))
    url = dep.start(timeout_s=60)
    try:
        healer = Healer(dep, RestartPolicy(first_backoff_s=0.2, max_backoff_s=1.0))
        for node in ("pd-d0", "prfaas-0"):
            old_url = _record(dep, node)["url"]
            dep.kill(node, signal.SIGKILL)
            t0 = time.monotonic()
            lines: list[str] = []
            # Back in membership: the router holds the new process's address (it binds new
            # ports) and counts it alive.
            while time.monotonic() - t0 < 15:
                lines += healer.tick()
                rec = _record(dep, node)
                if rec["url"] != old_url and rec["alive"]:
                    break
                time.sleep(0.1)
            back_s = time.monotonic() - t0
            print(f"{node}: back in membership {back_s:.2f} s after SIGKILL")
            assert rec["url"] != old_url and rec["alive"], (node, lines)
            assert back_s <= 5.0, f"{node} back in membership after {back_s:.1f} s"
            assert any("restarted" in line for line in lines)
        # The restarted decode node and PrfaaS node carry requests again.
        assert complete(url, SHORT_PROMPT).status_code == 200
        assert complete(url, LONG_PROMPT).status_code == 200
        assert healer.restarts == 2
    finally:
        dep.stop()
