"""Build and tear down a [datacenters] deployment's namespaces, bridges and the shaped veth.

Per process: a namespace with one veth (`eth0` inside, its address from the file; the host end on
its datacenter's bridge) and loopback up. The two bridges are joined by a veth pair whose ends
`tc tbf` shapes (one per direction). This machine gets `[datacenters] host` on the PD bridge, so
the supervisor's health checks and the clients reach the routers. Processes are put into their
namespace between fork and exec (`enter`), so no `ip netns exec` wrapper stands between the
supervisor and the process it watches. Teardown deletes every namespace and link it made; the
reaper does the same when the supervisor is killed (deploy/reaper.py).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

from prfaas.deploy.datacenters import PREFIX, Topology
from prfaas.transfer.netns import _run, _setns, delete_link, delete_namespace, namespaces
from prfaas.transfer.netns import root_links as host_links

_NAME = re.compile(rf"^{PREFIX}(\d+)(n\d+h?|b\d|x\d)$")


def build(top: Topology) -> list[str]:
    """Create everything; returns the commands run (for the log). Raises on the first failure
    (the caller tears down what was made)."""
    done: list[str] = []

    def do(*cmd: str) -> None:
        done.append(" ".join(cmd))
        _run(*cmd)

    for dc in (0, 1):
        do("ip", "link", "add", top.bridge(dc), "type", "bridge")
        do("ip", "link", "set", top.bridge(dc), "up")
    x0, x1 = top.link_ends()
    do("ip", "link", "add", x0, "type", "veth", "peer", "name", x1)
    for dc, end in ((0, x0), (1, x1)):
        do("ip", "link", "set", end, "master", top.bridge(dc))
        do("ip", "link", "set", end, "up")
        # Each end's egress is one direction of the inter-DC line.
        rate_kbit = max(int(top.rate_gbps * 1e6), 8)
        burst = max(256 << 10, int(top.rate_gbps * 1e9 / 8 / 250))
        do("tc", "qdisc", "add", "dev", end, "root", "tbf", "rate", f"{rate_kbit}kbit",
           "burst", str(burst), "latency", "50ms")  # fmt: skip
    for ns, addr, dc in top.unique():
        outside, inside = top.host_side(ns), f"{ns}c"
        do("ip", "netns", "add", ns)
        do("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        do("ip", "link", "set", inside, "netns", ns)
        do("ip", "-n", ns, "link", "set", inside, "name", "eth0")
        do("ip", "-n", ns, "addr", "add", f"{addr}/{top.prefix_len}", "dev", "eth0")
        do("ip", "-n", ns, "link", "set", "eth0", "up")
        do("ip", "-n", ns, "link", "set", "lo", "up")
        do("ip", "link", "set", outside, "master", top.bridge(dc))
        do("ip", "link", "set", outside, "up")
    do("ip", "addr", "add", f"{top.host}/{top.prefix_len}", "dev", top.bridge(0))
    return done


def teardown(top: Topology) -> None:
    """Delete every namespace and host interface of `top`; quiet about what is already gone."""
    for ns, _addr, _dc in top.unique():
        delete_namespace(ns)
    for dev in top.devices():
        delete_link(dev)


def link_counters(top: Topology) -> dict[str, int]:
    """Bytes each way across the inter-DC veth: `pd->other` leaves the PD datacenter."""
    x0, x1 = top.link_ends()
    base = Path("/sys/class/net")

    def read(dev: str, what: str) -> int:
        return int((base / dev / "statistics" / what).read_text())

    return {"pd->other": read(x0, "tx_bytes"), "other->pd": read(x1, "tx_bytes")}


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run this thread in namespace `ns` for a while (a child it forks is born there)."""
    with (
        open("/proc/thread-self/ns/net", "rb") as home,
        open(f"/var/run/netns/{ns}", "rb") as there,
    ):
        _setns(there.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


def enter(ns: str) -> None:
    """For a child between fork and exec: move into namespace `ns`."""
    fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def sweep_dead() -> list[str]:
    """Namespaces and interfaces of this prefix whose owner no longer runs (a killed run)."""
    from prfaas.deploy.netlinks import _owner_alive

    def dead(name: str) -> bool:
        m = _NAME.match(name)
        return m is not None and not _owner_alive(int(m.group(1)))

    gone = [ns for ns in sorted(namespaces()) if dead(ns)]
    for ns in gone:
        delete_namespace(ns)
    stray = [dev for dev in sorted(host_links()) if dead(dev)]
    for dev in stray:
        delete_link(dev)
    return gone + stray
