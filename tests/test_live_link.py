"""Live link-rate changes: the shaper's bucket, `prfaas link set`, the bandwidth schedule."""

from __future__ import annotations

import asyncio
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from live_support import EMULATED_TOML, LONG_PROMPT, complete, state, write_config
from prfaas.cli import main
from prfaas.deploy.config import parse_deployment
from prfaas.deploy.supervisor import Deployment
from prfaas.sim.from_deployment import setup_from_deployment
from prfaas.transfer.shaping import TokenBucket
from prfaas.worker.wan import LinkRate, Wan

SCHEDULED = EMULATED_TOML + "\n[control]\nbandwidth_schedule = [[0.0, 3.0, 0.1]]\n"


def test_the_shaper_changes_rate_in_place() -> None:
    cfg = parse_deployment(tomllib.loads(EMULATED_TOML))
    wan = Wan(cfg, "127.0.0.1")
    wan.buckets[("prfaas", "pd")] = TokenBucket(1.0)
    rate = asyncio.run(wan.set_link(LinkRate("pd", "prfaas", 10.0)))
    assert rate == pytest.approx(10.0 * cfg.engine.link_scale)
    for key in (("prfaas", "pd"), ("pd", "prfaas")):
        assert wan.buckets[key].rate_bytes_per_s == pytest.approx(rate * 1e9 / 8)
    with pytest.raises(ValueError, match="no link"):
        asyncio.run(wan.set_link(LinkRate("pd", "nowhere", 10.0)))
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(wan.set_link(LinkRate("pd", "prfaas", 0.0)))


def test_the_schedule_is_mirrored_in_modelled_time() -> None:
    cfg = parse_deployment(tomllib.loads(SCHEDULED))
    setup = setup_from_deployment(cfg)
    scale = cfg.engine.time_scale
    assert setup.bandwidth.windows == ((0.0, 3.0 * scale, 0.1),)


def test_bad_schedules_are_refused() -> None:
    from prfaas.errors import ConfigError

    for bad in ("[[2.0, 1.0, 0.5]]", "[[0.0, 1.0, 0.0]]", "[[0.0, 2.0, 0.5], [1.0, 3.0, 0.5]]"):
        text = EMULATED_TOML + f"\n[control]\nbandwidth_schedule = {bad}\n"
        with pytest.raises(ConfigError, match="bandwidth_schedule"):
            parse_deployment(tomllib.loads(text))


def _capacity(dep: Deployment) -> float:
    return float(state(dep)["links"]["prfaas->pd"]["capacity_gbps"])  # type: ignore[index]


@pytest.mark.slow
def test_link_set_and_the_schedule_change_the_live_capacity(tmp_path: Path) -> None:
    dep = Deployment(write_config(tmp_path, SCHEDULED))
    url = dep.start(timeout_s=60)
    try:
        assert _capacity(dep) == 100
        assert complete(url, LONG_PROMPT).status_code == 200  # starts the schedule's clock
        deadline = time.monotonic() + 2
        while _capacity(dep) != 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _capacity(dep) == pytest.approx(10.0)
        deadline = time.monotonic() + 10
        while _capacity(dep) != 100 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _capacity(dep) == 100  # the window ended
        operator = ["--url", dep.control_url, "--pki", str(dep.pki_dir)]
        # Without the operator's certificate the control listener refuses the connection.
        assert main(["link", "set", "--url", dep.control_url, "--gbps", "25"]) == 2
        assert _capacity(dep) == 100
        assert main(["link", "set", *operator, "--gbps", "25"]) == 0
        assert _capacity(dep) == pytest.approx(25.0)
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert complete(url, LONG_PROMPT).status_code == 200  # still serves at the new rate
        assert "link_capacity_gbps" in metrics
        assert main(["link", "set", *operator, "--gbps", "5", "--src", "nowhere"]) == 2
    finally:
        dep.stop()
