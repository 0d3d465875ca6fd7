"""Several worker nodes in one process: each node registers, serves and is reachable on its own
listeners; a killed process takes all its nodes down, and the supervisor restarts them together."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from live_support import EMULATED_TOML, LONG_PROMPT, SHORT_PROMPT, complete, state, write_config
from prfaas.deploy.healer import Healer
from prfaas.deploy.healing import RestartPolicy
from prfaas.deploy.supervisor import Deployment


def _grouped(tmp_path: Path) -> Path:
    text = EMULATED_TOML.replace("[deployment]\n", "[deployment]\nnodes_per_process = 2\n", 1)
    assert text != EMULATED_TOML
    return write_config(tmp_path, text)


def _records(dep: Deployment) -> dict[str, tuple[bool, str]]:
    nodes = state(dep)["nodes"]
    return {n: (bool(r["alive"]), str(r["url"])) for n, r in nodes.items()}  # type: ignore[attr-defined]


@pytest.mark.slow
def test_nodes_share_a_process_and_come_back_together(tmp_path: Path) -> None:
    dep = Deployment(_grouped(tmp_path))
    url = dep.start(timeout_s=90)
    try:
        groups = dep.worker_groups()
        assert all(len(nodes) <= 2 for nodes in groups.values()) and len(groups) >= 2
        assert set(groups) <= set(dep.procs)  # one process per group, none per node
        assert len(set(dep.node_urls.values())) == len(dep.cfg.nodes)  # own listeners each
        assert complete(url, SHORT_PROMPT).status_code == 200
        assert complete(url, LONG_PROMPT).status_code == 200
        proc, nodes = next((p, n) for p, n in groups.items() if len(n) == 2)
        healer = Healer(dep, RestartPolicy(first_backoff_s=0.2, max_backoff_s=1.0))
        before = _records(dep)
        dep.kill(proc, signal.SIGKILL)
        t0 = time.monotonic()

        def back() -> bool:  # the restarted process's nodes registered anew (new ports), alive
            now = _records(dep)
            return all(now[n][0] and now[n][1] != before[n][1] for n in nodes) and all(
                alive for alive, _ in now.values()
            )

        while time.monotonic() - t0 < 20 and not back():
            healer.tick()
            time.sleep(0.1)
        print(f"{proc} ({', '.join(nodes)}) back {time.monotonic() - t0:.2f} s after SIGKILL")
        assert healer.restarts == 1 and back()
        assert complete(url, SHORT_PROMPT).status_code == 200
        assert complete(url, LONG_PROMPT).status_code == 200
    finally:
        dep.stop()
