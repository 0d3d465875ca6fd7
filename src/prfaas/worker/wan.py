"""The WAN emulator process: shaping relays (prfaas.transfer.shaping) in front of transfer ports.

Every link direction (src cluster -> dst cluster) has ONE token bucket shared by all its relays, so
all senders of a cluster share the link's capacity as they would share a real line; each relay adds
the one-way delay. The router asks for a relay per (link direction, receiving node) when the node
registers and hands senders the relay's port instead of the node's. Intra-cluster traffic goes
through a relay only when the cluster sets intra_gbps (the fast link); else it is direct.

A link with `emulation = "netns"` is two network namespaces joined by a veth pair whose egress
`tc tbf` sets the rate (prfaas.transfer.netns). Its relay accepts on loopback, connects from a
socket in the sending side's namespace to a listener in the receiving side's namespace (so the KV
bytes cross the shaped veth: the kernel sets the rate), which adds the one-way delay in userspace
(this kernel has no netem) and forwards to the receiving node on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Annotated

import msgspec

from prfaas.deploy.config import DeploymentConfig
from prfaas.transfer.netns import NetnsLink
from prfaas.transfer.shaping import ShapingRelay, Tamper, TokenBucket
from prfaas.worker.wanrelay import NetnsRelay


class RelayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A relay for senders of cluster `src` in front of `node`'s transfer port. The host is the
    node's advertised address from the deployment file: no address is taken from the request."""

    src: str  # sending cluster
    node: str  # receiving node
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)]


class SavedRelay(msgspec.Struct, frozen=True):
    """One relay as the state file keeps it: the request and the port it listens on."""

    src: str
    node: str
    port: int
    relay_port: int


class RelayRefused(Exception):
    """Not a configured link or node: the emulator relays only what the deployment declares."""


class LinkRate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A new modelled rate for the link between two clusters (both directions)."""

    src: Annotated[str, msgspec.Meta(max_length=128)]
    dst: Annotated[str, msgspec.Meta(max_length=128)]
    gbps: Annotated[float, msgspec.Meta(ge=0, le=1e6)]


def link_shape(cfg: DeploymentConfig, src: str, dst: str) -> tuple[float, float] | None:
    """(emulated rate Gbit/s or 0 = unlimited, one-way delay s) of a direction; None = direct."""
    eng = cfg.engine
    if src == dst:
        gbps, rtt_ms = cfg.cluster(src).intra_gbps, 0.0
    else:
        link = cfg.link(src, dst)
        if link is None:
            return None
        # A veth link between datacenters is rate-shaped by tc tbf: the relay only delays.
        gbps, rtt_ms = (0.0 if link.emulation == "veth" else link.gbps), link.rtt_ms
    if gbps <= 0 and rtt_ms <= 0:
        return None
    return gbps * eng.link_scale, rtt_ms / 2000.0 / eng.time_scale


class Wan:
    def __init__(
        self,
        cfg: DeploymentConfig,
        host: str,
        tamper: Tamper | None = None,
        state_file: Path | None = None,
        advertise: str = "",
    ) -> None:
        self.cfg, self.host = cfg, host
        self.advertise = advertise or host  # what senders dial (never a wildcard)
        self.state_file = state_file  # the relays' ports, so a restarted emulator reopens them
        self.tamper = tamper  # test hook on every shaped relay (worker/wanfaults.py)
        self.buckets: dict[tuple[str, str], TokenBucket] = {}
        self.relays: dict[tuple[str, str, str], ShapingRelay | NetnsRelay] = {}
        self.targets: dict[tuple[str, str, str], int] = {}  # relay -> the node's port
        self.netns: dict[tuple[str, str], NetnsLink] = {}  # (link src, link dst) -> namespaces
        self.notes: list[str] = []
        self._lock = asyncio.Lock()

    def build_netns(self) -> None:
        """One namespace pair per netns link, tbf at the link's emulated rate both ways."""
        from prfaas.deploy.netlinks import link_tag, netns_links

        for i, link in netns_links(self.cfg):
            shape = link_shape(self.cfg, link.src, link.dst)
            assert shape is not None  # gbps > 0
            ns = NetnsLink(shape[0], loss_pct=link.loss * 100 or None, tag=link_tag(os.getpid(), i))
            self.netns[(link.src, link.dst)] = ns.__enter__()
            what = f"link {link.src}<->{link.dst}"
            self.notes.append(
                f"{what}: netns {ns.ns_a}/{ns.ns_b}, tbf {shape[0]:g} Gbit/s on veth "
                f"{ns.dev_a}<->{ns.dev_b}, {link.rtt_ms:g} ms RTT from a userspace delay relay"
            )
            if link.loss and ns.netem_error:
                self.notes.append(
                    f"{what}: loss {link.loss:g} NOT applied: this kernel has no netem "
                    f"(`tc qdisc add ... netem` said: {ns.netem_error})"
                )
            elif link.loss:
                self.notes.append(f"{what}: netem drops {link.loss * 100:g}% of a->b packets")

    def _netns_side(self, src: str, dst: str) -> tuple[NetnsLink, str] | None:
        if (src, dst) in self.netns:
            return self.netns[(src, dst)], "a"
        if (dst, src) in self.netns:
            return self.netns[(dst, src)], "b"
        return None

    def _resolve(self, req: RelayRequest) -> tuple[str, str]:
        """(receiving cluster, the node's advertised host), or RelayRefused."""
        names = {n.name: n for n in self.cfg.nodes}
        if req.node not in names or req.src not in {c.name for c in self.cfg.clusters}:
            raise RelayRefused(f"unknown cluster {req.src!r} or node {req.node!r}")
        node = names[req.node]
        return node.cluster, node.advertise

    async def restore(self) -> int:
        """Reopen the relays a previous run of this emulator recorded, on the same ports (the
        router handed those ports to senders); a port taken meanwhile gets a new one. Returns
        how many relays were reopened."""
        if self.state_file is None or not self.state_file.exists():
            return 0
        try:
            saved = msgspec.json.decode(self.state_file.read_bytes(), type=list[SavedRelay])
        except (OSError, msgspec.MsgspecError):
            return 0
        for item in saved:
            with contextlib.suppress(RelayRefused, OSError):
                await self.relay(RelayRequest(item.src, item.node, item.port), item.relay_port)
        return len(self.relays)

    def _save(self) -> None:
        if self.state_file is None:
            return
        rows = [
            SavedRelay(src, node, self.targets[(src, dst, node)], int(relay.port))
            for (src, dst, node), relay in self.relays.items()
        ]
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(rows))
        tmp.replace(self.state_file)

    async def relay(self, req: RelayRequest, listen_port: int = 0) -> int | None:
        try:
            return await self._relay(req, listen_port)
        except OSError:
            if not listen_port:
                raise
            return await self._relay(req, 0)  # the old port was taken meanwhile

    async def _relay(self, req: RelayRequest, listen_port: int) -> int | None:
        dst, host = self._resolve(req)
        shape = link_shape(self.cfg, req.src, dst)
        if shape is None:
            return None
        # One relay per (sending cluster, node): a restarted node's new port replaces the old
        # relay, so their number is bounded by the deployment's size.
        key = (req.src, dst, req.node)
        async with self._lock:
            relay = self.relays.get(key)
            if relay is not None and self.targets.get(key) != req.port:
                with contextlib.suppress(Exception):
                    await relay.close()
                relay = None
            self.targets[key] = req.port
            netns = self._netns_side(req.src, dst)
            if relay is None and netns is not None:
                relay = NetnsRelay(
                    self.host, netns[0], netns[1], (host, req.port), shape[1], listen_port
                )
                await relay.start()
                self.relays[key] = relay
            elif relay is None:
                rate_gbps, delay_s = shape
                relay = ShapingRelay(
                    self.host,
                    listen_port,
                    host,
                    req.port,
                    one_way_delay_s=delay_s,
                    rate_gbps=rate_gbps or None,
                    tamper=self.tamper,
                )
                if rate_gbps:
                    bucket = self.buckets.setdefault((req.src, dst), TokenBucket(rate_gbps))
                    relay.bucket = bucket  # one line per link direction, shared by all relays
                await relay.start()
                self.relays[key] = relay
            self._save()
            return int(relay.port)

    async def set_link(self, req: LinkRate) -> float:
        """Change a link's rate (both directions) live; returns the emulated Gbit/s applied."""
        link = self.cfg.link(req.src, req.dst)
        if link is None:
            raise ValueError(f"no link between {req.src!r} and {req.dst!r}")
        if link.emulation == "veth":
            raise ValueError("the inter-datacenter veth is shaped by `prfaas up` (tc tbf on the "
                             "host); change it there with `tc qdisc change`")
        if not (req.gbps > 0 and req.gbps < float("inf")):
            raise ValueError(f"gbps must be a positive number, got {req.gbps!r}")
        rate = req.gbps * self.cfg.engine.link_scale
        async with self._lock:
            for key in ((link.src, link.dst), (link.dst, link.src)):
                bucket = self.buckets.get(key)
                if bucket is not None:
                    bucket.set_rate(rate)
                else:  # no relay yet: the first one starts at the new rate
                    self.buckets[key] = TokenBucket(rate)
            ns = self.netns.get((link.src, link.dst))
            if ns is not None:
                await asyncio.to_thread(ns.set_rate, rate)
        return rate

    async def close(self) -> None:
        try:
            for relay in self.relays.values():
                with contextlib.suppress(Exception):
                    await relay.close()
        finally:
            for ns in self.netns.values():
                ns.teardown()


def needs_wan(cfg: DeploymentConfig) -> bool:
    return bool(cfg.links) or any(c.intra_gbps > 0 for c in cfg.clusters)
