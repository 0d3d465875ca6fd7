"""Any process killed with SIGKILL is restarted by the supervisor and serves again in seconds."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
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


def _heal_until(healer: Healer, ok: Callable[[], bool], limit_s: float) -> tuple[float, list[str]]:
    t0, lines = time.monotonic(), []
    while time.monotonic() - t0 < limit_s:
        lines += healer.tick()
        with contextlib.suppress(httpx.HTTPError):
            if ok():
                break
        time.sleep(0.1)
    return time.monotonic() - t0, lines


@pytest.mark.slow
def test_a_killed_router_and_wan_come_back_on_their_ports(tmp_path: Path) -> None:
    """The router returns on the same public and control ports (clients and workers keep their
    addresses) and serves within 5 s; the WAN emulator reopens its relays on their old ports,
    so offloaded requests (KV across the emulated link) succeed with no router involvement."""
    dep = Deployment(write_config(tmp_path))
    url = dep.start(timeout_s=60)
    try:
        assert complete(url, LONG_PROMPT).status_code == 200  # a relay exists now
        healer = Healer(dep, RestartPolicy(first_backoff_s=0.2, max_backoff_s=1.0))
        # Steady state, as under `prfaas up`: the router's warm spare has started and imported.
        _heal_until(healer, lambda: "router" in dep.standbys, 20)
        time.sleep(4.0)
        control = dep.control_url
        dep.kill("router", signal.SIGKILL)

        def serves() -> bool:
            return complete(url, SHORT_PROMPT, timeout=5).status_code == 200

        back_s, lines = _heal_until(healer, serves, 15)
        print(f"router: serving again {back_s:.2f} s after SIGKILL")
        assert serves(), lines
        assert back_s <= 5.0, f"router back after {back_s:.1f} s"
        assert dep.control_url == control and state(dep)["nodes"]  # same control address
        assert any("router exited" in line for line in lines), lines
        relays = json.loads((dep.run_dir / "wan-relays.json").read_text())
        dep.kill("wan", signal.SIGKILL)
        back_s, lines = _heal_until(healer, lambda: dep.control("GET", "/health", "wan",
                                                               timeout=2).status_code == 200, 15)
        print(f"wan: back {back_s:.2f} s after SIGKILL")
        assert back_s <= 5.0, lines
        assert json.loads((dep.run_dir / "wan-relays.json").read_text()) == relays
        assert complete(url, LONG_PROMPT + "again").status_code == 200
        # etcd comes back with the same command line: the same ports and data folder (the
        # leases it held are still there, so nodes and routers carry on).
        etcd_cmd = list(dep.commands["etcd"])
        dep.kill("etcd", signal.SIGKILL)
        seen: list[str] = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and not any("etcd restarted" in x for x in seen):
            seen += healer.tick()
            time.sleep(0.1)
        assert any("etcd restarted" in line for line in seen), seen
        assert dep.commands["etcd"] == etcd_cmd and dep.procs["etcd"].poll() is None
        assert complete(url, SHORT_PROMPT + "!").status_code == 200
        # ... and the watches followed it: a worker restarted now registers and serves.
        old_url = _record(dep, "pd-d0")["url"]
        dep.kill("pd-d0", signal.SIGKILL)
        back_s, lines = _heal_until(
            healer, lambda: _record(dep, "pd-d0")["url"] != old_url
            and complete(url, SHORT_PROMPT + "?", timeout=5).status_code == 200, 20)
        print(f"pd-d0 killed after the etcd restart: serving again in {back_s:.2f} s")
        assert complete(url, SHORT_PROMPT + "?").status_code == 200, lines
        assert healer.restarts == 4
    finally:
        dep.stop()
