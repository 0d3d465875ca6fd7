"""Two network namespaces joined by a veth pair, rate-shaped with tc tbf; always torn down.

    with NetnsLink(rate_gbps=1.0) as link:
        subprocess.run([*link.exec_prefix("b"), "iperf3", "-s", "-1"]) ...
        # the sender runs under link.exec_prefix("a") and reaches link.addr_b

Delay is not added here: this kernel has no netem, so the benchmark runs a userspace delay relay
(`prfaas.transfer.shaping`) inside namespace b. `loss_pct` asks for netem loss on a's egress;
where the kernel lacks netem, `netem_error` holds tc's message and no loss is applied. Only
addresses inside the two namespaces this object creates are used (10.213.x.y/30).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess
from types import TracebackType

CLONE_NEWNET = 0x40000000


def netns_missing() -> str | None:
    """Why network namespaces cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (apt-get install -y iproute2)"
    return None


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip()}")
    return proc


def _existing() -> set[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def namespaces() -> set[str]:
    """Names of the network namespaces `ip netns` knows."""
    return _existing()


def delete_namespace(name: str) -> None:
    """`ip netns del NAME` (its veth ends go with it); quiet when it is already gone."""
    _run("ip", "netns", "del", name, check=False)


def root_links() -> set[str]:
    """Names of the network interfaces in this process's own namespace."""
    out = _run("ip", "-o", "link", "show", check=False).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def delete_link(name: str) -> None:
    _run("ip", "link", "del", name, check=False)


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def socket_in(
    ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket living in namespace `ns`, made from this thread without leaving it there.

    A socket stays in the namespace it was created in, so one process can listen or connect on
    either side of a veth pair while its other sockets stay on the host's loopback.
    """
    with (
        open("/proc/thread-self/ns/net", "rb") as home,
        open(f"/var/run/netns/{ns}", "rb") as there,
    ):
        _setns(there.fileno())
        try:
            return socket.socket(family, kind)
        finally:
            _setns(home.fileno())  # an error here leaves the thread elsewhere: let it raise


class NetnsLink:
    """Namespaces `<tag>a`/`<tag>b`, veth `<tag>va`/`<tag>vb`, tbf at `rate_gbps` both ways."""

    def __init__(
        self, rate_gbps: float | None = None, *, loss_pct: float | None = None, tag: str = ""
    ) -> None:
        reason = netns_missing()
        if reason:
            raise RuntimeError(reason)
        self.rate_gbps = rate_gbps
        self.loss_pct = loss_pct
        taken = _existing()
        pid = os.getpid()
        for k in range(250):
            n = (pid + k) % 250 + 1
            cand = tag or f"pfx{n}"
            if f"{cand}a" not in taken and f"{cand}b" not in taken:
                break
        self.tag, self.subnet = cand, n
        self.ns_a, self.ns_b = f"{cand}a", f"{cand}b"
        self.dev_a, self.dev_b = f"{cand}va", f"{cand}vb"
        self.addr_a, self.addr_b = f"10.213.{n}.1", f"10.213.{n}.2"
        self.netem_error: str | None = None
        self.commands: list[str] = []
        self._up = False

    def exec_prefix(self, side: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns_a if side == "a" else self.ns_b]

    def _do(self, *cmd: str) -> None:
        self.commands.append(" ".join(cmd))
        _run(*cmd)

    def __enter__(self) -> NetnsLink:
        self._up = True
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.teardown()

    def _build(self) -> None:
        a, b = self.ns_a, self.ns_b
        self._do("ip", "netns", "add", a)
        self._do("ip", "netns", "add", b)
        self._do("ip", "link", "add", self.dev_a, "type", "veth", "peer", "name", self.dev_b)
        self._do("ip", "link", "set", self.dev_a, "netns", a)
        self._do("ip", "link", "set", self.dev_b, "netns", b)
        for ns, dev, addr in ((a, self.dev_a, self.addr_a), (b, self.dev_b, self.addr_b)):
            self._do("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            self._do("ip", "-n", ns, "link", "set", dev, "up")
            self._do("ip", "-n", ns, "link", "set", "lo", "up")
        if self.loss_pct:
            self._try_netem()
        if self.rate_gbps:
            for ns, dev in ((a, self.dev_a), (b, self.dev_b)):
                self._shape(ns, dev)

    def set_rate(self, rate_gbps: float) -> None:
        """Change the veth pair's tbf rate in place (`tc qdisc change`), both directions."""
        if rate_gbps <= 0:
            raise ValueError("rate_gbps must be > 0")
        self.rate_gbps = rate_gbps
        for ns, dev in ((self.ns_a, self.dev_a), (self.ns_b, self.dev_b)):
            self._shape(ns, dev, "change")

    def _shape(self, ns: str, dev: str, verb: str = "add") -> None:
        assert self.rate_gbps is not None
        rate_kbit = int(self.rate_gbps * 1e6)
        # tbf needs a bucket of at least rate/HZ; 256 KB is what measured ~0.95 of 1 Gbit/s here.
        burst = max(256 << 10, int(self.rate_gbps * 1e9 / 8 / 250))
        parent = (
            ["parent", "1:1"]
            if (ns == self.ns_a and self.loss_pct and not self.netem_error)
            else ["root"]
        )
        self._do(
            "ip", "netns", "exec", ns, "tc", "qdisc", verb, "dev", dev, *parent,
            "tbf", "rate", f"{rate_kbit}kbit", "burst", str(burst), "latency", "50ms",
        )  # fmt: skip

    def _try_netem(self) -> None:
        cmd = ["ip", "netns", "exec", self.ns_a, "tc", "qdisc", "add", "dev", self.dev_a]
        cmd += ["root", "handle", "1:", "netem", "loss", f"{self.loss_pct}%"]
        self.commands.append(" ".join(cmd))
        proc = _run(*cmd, check=False)
        if proc.returncode != 0:
            self.netem_error = proc.stderr.strip() or f"tc exited with {proc.returncode}"

    def teardown(self) -> None:
        """Delete both namespaces (which removes the veth pair); safe to call twice."""
        if not self._up:
            return
        self._up = False
        for ns in (self.ns_a, self.ns_b):
            _run("ip", "netns", "del", ns, check=False)
        _run("ip", "link", "del", self.dev_a, check=False)  # if the move into a never happened


def netem_probe() -> str | None:
    """tc's error when adding a netem qdisc fails on this kernel, or None when netem works."""
    with NetnsLink(None, loss_pct=0.1) as link:
        return link.netem_error
