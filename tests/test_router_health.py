"""/health tells the truth: per-cluster liveness, degraded while a path remains, 503 when none."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from live_support import write_config
from prfaas.deploy.supervisor import Deployment
from prfaas.router.health import health_status


@dataclass
class Rec:
    cluster: str
    role: str
    alive: bool
    draining: bool = False

    @property
    def usable(self) -> bool:
        return self.alive and not self.draining


def _fleet(**down: bool) -> list[Rec]:
    names = {"p0": ("prfaas", "prefill"), "pp0": ("pd", "prefill"), "pd0": ("pd", "decode")}
    return [Rec(c, r, not down.get(n, False)) for n, (c, r) in names.items()]


def test_all_up_is_ok() -> None:
    h = health_status(_fleet())
    assert (h["ok"], h["status"], h["registered"], h["expected"]) == (True, "ok", 3, 3)
    assert h["clusters"] == {"pd": {"alive": 2, "expected": 2, "status": "ok"},
                             "prfaas": {"alive": 1, "expected": 1, "status": "ok"}}


def test_prfaas_cluster_down_is_degraded_not_unavailable() -> None:
    h = health_status(_fleet(p0=True))
    assert h["ok"] and h["status"] == "degraded"
    assert h["clusters"]["prfaas"]["status"] == "down"


def test_no_decode_or_no_prefill_anywhere_is_unavailable() -> None:
    assert health_status(_fleet(pd0=True))["status"] == "unavailable"
    none_prefill = health_status(_fleet(p0=True, pp0=True))
    assert not none_prefill["ok"] and none_prefill["status"] == "unavailable"
    # A draining node is alive (counted) but serves nothing new.
    fleet = _fleet(p0=True)
    fleet[1].draining = True
    h = health_status(fleet)
    assert h["status"] == "unavailable" and h["clusters"]["pd"]["alive"] == 2


def _until(pred: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.mark.slow
def test_live_health_and_metrics_follow_dead_nodes(tmp_path: Path) -> None:
    dep = Deployment(write_config(tmp_path))
    url = dep.start(timeout_s=60)
    try:
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        dep.kill("prfaas-0", signal.SIGKILL)
        _until(lambda: httpx.get(f"{url}/health").json()["status"] == "degraded")
        resp = httpx.get(f"{url}/health")
        assert resp.status_code == 200 and resp.json()["clusters"]["prfaas"]["status"] == "down"
        _until(lambda: 'prfaas_node_up{cluster="prfaas",node="prfaas-0",role="prefill"} 0.0'
               in httpx.get(f"{url}/metrics").text)
        metrics = httpx.get(f"{url}/metrics").text
        assert 'prfaas_node_role{cluster="prfaas",node="prfaas-0",role="prefill"} 0.0' in metrics
        assert 'prfaas_node_up{cluster="pd",node="pd-d0",role="decode"} 1.0' in metrics
        dep.kill("pd-d0", signal.SIGKILL)
        _until(lambda: httpx.get(f"{url}/health").status_code == 503)
        assert httpx.get(f"{url}/health").json()["status"] == "unavailable"
    finally:
        dep.stop()
