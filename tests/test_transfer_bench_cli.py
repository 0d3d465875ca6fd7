"""`prfaas transfer-bench` argument handling, a tiny loopback run, and the netns helper."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from prfaas.cli import main
from prfaas.commands.transfer_bench import parse_connections, parse_size
from prfaas.errors import UsageError


def test_sizes_and_connection_lists_parse() -> None:
    assert parse_size("1GiB", "--size") == 1 << 30
    assert parse_size("256 MiB", "--size") == 256 << 20
    assert parse_size("1.5MB", "--size") == 1_500_000
    assert parse_size("4096", "--chunk") == 4096
    assert parse_connections("1,2,4,8") == (1, 2, 4, 8)
    for bad in ("", "1XB", "-3", "0"):
        with pytest.raises(UsageError):
            parse_size(bad, "--size")
    with pytest.raises(UsageError):
        parse_connections("1,x")
    with pytest.raises(UsageError):
        parse_connections("0")


@pytest.mark.parametrize(
    "argv",
    [
        ["--netns"],  # needs --link-gbps
        ["--rtt-ms", "40"],
        ["--link-gbps", "0"],
        ["--chunk", "1KiB"],
        ["--reps", "0"],
    ],
)
def test_bad_flag_combinations_exit_2_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["transfer-bench", "--size", "1MiB", *argv]) == 2
    err = capsys.readouterr().err
    assert "transfer-bench: error:" in err and "Traceback" not in err


def test_tiny_loopback_run_reports_verified_samples(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    rc = main(
        ["transfer-bench", "--size", "8MiB", "--connections", "1,2", "--reps", "1",
         "--layers", "4", "--chunk", "1MiB", "--json", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    peers = {(s["peer"], s["connections"]) for s in data["samples"]}
    assert peers == {("prfaas", 1), ("prfaas", 2)}
    assert all(s["verified"] and s["gbps"] > 0 for s in data["samples"])
    assert data["machine"]["cpus"] >= 1


def _netns_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if not shutil.which("ip") or not shutil.which("tc"):
        return "needs iproute2"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    return None if probe.returncode == 0 else "ip netns does not work here"


@pytest.mark.skipif(_netns_ok() is not None, reason=f"netns: {_netns_ok()}")
def test_netns_link_is_built_shaped_and_always_torn_down() -> None:
    from prfaas.transfer.netns import NetnsLink

    def names() -> str:
        return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout

    with pytest.raises(RuntimeError, match="boom"), NetnsLink(rate_gbps=0.5, loss_pct=0.1) as link:
        assert link.ns_a in names() and link.ns_b in names()
        qd = subprocess.run(
            [*link.exec_prefix("a"), "tc", "qdisc", "show", "dev", link.dev_a],
            capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert "tbf" in qd
        ping = [*link.exec_prefix("a"), "python3", "-c",
                f"import socket; s=socket.socket(); s.settimeout(2); "
                f"print(s.connect_ex(('{link.addr_b}', 9)))"]  # fmt: skip
        # Connection refused (111) proves the veth path to b works (nothing listens on 9).
        assert subprocess.run(ping, capture_output=True, text=True).stdout.strip() == "111"
        # netem is either applied or its absence is reported, never silently ignored.
        assert link.netem_error is None or "qdisc" in link.netem_error.lower()
        raise RuntimeError("boom")
    assert link.ns_a not in names() and link.ns_b not in names()
