"""A live deployment whose PrfaaS -> PD link is netns + veth + tc tbf (emulation = "netns")."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from live_support import EMULATED_TOML, LONG_PROMPT, SHORT_PROMPT, complete, write_config
from prfaas.deploy.netlinks import PREFIX
from prfaas.deploy.supervisor import Deployment
from prfaas.errors import ConfigError
from prfaas.transfer.netns import netns_missing

pytestmark = pytest.mark.slow

PAYLOAD_SCALE = 0.025
TIME_SCALE = 20.0  # EMULATED_TOML's
MODEL_GBPS = 0.2
TBF_GBPS = MODEL_GBPS * PAYLOAD_SCALE * TIME_SCALE  # what the WAN emulator gives tbf: 0.1
NETNS_TOML = (
    EMULATED_TOML.replace("payload_scale = 0.0001", f"payload_scale = {PAYLOAD_SCALE}")
    .replace("gbps = 100", f"gbps = {MODEL_GBPS}")
    .replace("rtt_ms = 20\n", 'rtt_ms = 20\nemulation = "netns"\nloss = 0.001\n')
)


def _why_not() -> str | None:
    reason = netns_missing()
    if reason is None and subprocess.run(["ip", "netns", "list"], capture_output=True).returncode:
        reason = "`ip netns` does not work here"
    return reason


netns_only = pytest.mark.skipif(_why_not() is not None, reason=f"netns links: {_why_not()}")


def ours() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)}


def ip_json(ns: str, *args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", *args], capture_output=True, text=True)
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def veth_tx_bytes(dep: Deployment) -> int:
    tag = f"{PREFIX}{dep.procs['wan'].pid}l0"
    link = ip_json(f"{tag}a", "link", "show", f"{tag}va")[0]
    return int(link["stats64"]["tx"]["bytes"])  # type: ignore[index]


def tbf_stats(dep: Deployment) -> dict[str, object]:
    tag = f"{PREFIX}{dep.procs['wan'].pid}l0"
    out = subprocess.run(
        ["ip", "netns", "exec", f"{tag}a", "tc", "-s", "-j", "qdisc", "show", "dev", f"{tag}va"],
        capture_output=True,
        text=True,
    ).stdout
    (tbf,) = [q for q in json.loads(out) if q["kind"] == "tbf"]
    result: dict[str, object] = tbf
    return result


def payload_bytes(url: str) -> float:
    """Emulated KV bytes sent on prfaas->pd (the router counts modelled bytes)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    key = 'prfaas_transfer_bytes_total{link="prfaas->pd"}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if _why_not() is not None:
        pytest.skip(f"netns links: {_why_not()}")
    stale = f"{PREFIX}{dead_pid()}l0a"  # what a killed run would have left
    subprocess.run(["ip", "netns", "add", stale], check=True)
    d = Deployment(write_config(tmp_path_factory.mktemp("netns"), NETNS_TOML))
    try:
        d.start(timeout_s=60)
        d.stale_seen = stale in ours()  # type: ignore[attr-defined]
        yield d
    finally:
        d.stop()
        subprocess.run(["ip", "netns", "del", stale], capture_output=True)


@netns_only
def test_start_sweeps_stale_namespaces_and_notes_missing_netem(dep: Deployment) -> None:
    assert dep.stale_seen is False  # type: ignore[attr-defined]
    assert any("tbf 0.1 Gbit/s" in n for n in dep.notes)
    probe = subprocess.run(
        ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "loss", "0.1%"], capture_output=True
    )
    if probe.returncode == 0:  # a kernel with netem: it is applied, not just reported
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        assert not any("NOT applied" in n for n in dep.notes)
    else:
        assert any("no netem" in n for n in dep.notes), dep.notes


@netns_only
def test_offloaded_kv_crosses_the_veth_at_the_tbf_rate(dep: Deployment) -> None:
    url = dep.url
    for k in range(2):
        tx0, pay0, tbf0 = veth_tx_bytes(dep), payload_bytes(url), tbf_stats(dep)
        resp = complete(url, f"[netns {k}] " + LONG_PROMPT * 12, max_tokens=4)
        assert resp.status_code == 200, resp.text
        assert len(resp.json()["choices"][0]["text"]) == 4
        entry = dep.control("GET", "/internal/decisions", timeout=5).json()["decisions"][-1]
        assert entry["offloaded"] and entry["decode_node"] == "pd-d0"
        sent = (payload_bytes(url) - pay0) * PAYLOAD_SCALE
        crossed = veth_tx_bytes(dep) - tx0
        assert sent > 4e6
        assert sent <= crossed < sent * 1.1  # every KV byte, plus TCP/IP headers, crossed it
        tbf1 = tbf_stats(dep)
        assert int(tbf1["bytes"]) - int(tbf0["bytes"]) >= sent  # type: ignore[call-overload]
        assert int(tbf1["overlimits"]) > int(tbf0["overlimits"])  # type: ignore[call-overload]
        gbps = sent * 8 / entry["transfer_s"] / 1e9
        assert gbps <= TBF_GBPS * 1.1, f"{gbps:.3f} Gbit/s through a {TBF_GBPS} Gbit/s tbf"


@netns_only
def test_local_requests_stay_off_the_veth(dep: Deployment) -> None:
    tx0 = veth_tx_bytes(dep)
    resp = complete(dep.url, f"[local] {SHORT_PROMPT}")
    assert resp.status_code == 200, resp.text
    entry = dep.control("GET", "/internal/decisions", timeout=5).json()["decisions"][-1]
    assert not entry["offloaded"]
    assert veth_tx_bytes(dep) - tx0 < 4096


@netns_only
def test_stop_sweeps_what_a_killed_wan_emulator_left(tmp_path: Path) -> None:
    d = Deployment(write_config(tmp_path, NETNS_TOML))
    try:
        d.start(timeout_s=60)
        tag = f"{PREFIX}{d.procs['wan'].pid}l0"
        assert {f"{tag}a", f"{tag}b"} <= ours()
        d.kill("wan", signal.SIGKILL)  # no chance to tear anything down itself
        d.procs["wan"].wait(timeout=10)
        assert f"{tag}a" in ours()
    finally:
        d.stop()
    assert not {n for n in ours() if n.startswith(tag)}


def _up(config: Path) -> tuple[subprocess.Popen[str], set[str]]:
    before = ours()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prfaas", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("prfaas is up: http://"):
        proc.kill()
        pytest.fail(f"prfaas up did not come up: {first!r}; stderr: {proc.communicate()[1]}")
    url = first.split()[3]
    assert complete(url, f"[up] {LONG_PROMPT}").status_code == 200
    return proc, ours() - before


@netns_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_prfaas_up_leaves_no_namespace(tmp_path: Path, sig: int) -> None:
    proc, mine = _up(write_config(tmp_path, NETNS_TOML))
    try:
        assert len(mine) == 2
        proc.send_signal(sig)
        proc.wait(timeout=20)
        # SIGKILL: the WAN emulator gets SIGTERM from the kernel (PDEATHSIG) and tears down.
        deadline = time.monotonic() + 15
        while mine & ours() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not mine & ours()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_netns_without_root_or_tools_is_a_one_line_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import prfaas.transfer.netns as netns
    from prfaas.cli import main

    monkeypatch.setattr(netns, "netns_missing", lambda: "network namespaces need root")
    config = write_config(tmp_path, NETNS_TOML)
    with pytest.raises(ConfigError, match='prfaas->pd has emulation = "netns", but network'):
        Deployment(config)
    assert main(["up", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "need root" in err and "shaper" in err
