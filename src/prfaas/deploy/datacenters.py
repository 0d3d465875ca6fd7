"""[datacenters]: every process of a deployment in its own network namespace, two datacenters.

Each cluster is a datacenter: its nodes' namespaces hang on one Linux bridge. The routers and
etcd sit in the datacenter of the PD cluster; the WAN emulator (its delay relays) shares the
first router's namespace and address, where the workers expect relays to be. The two bridges
are joined by one veth pair whose two ends `tc tbf` shapes at the `[[links]]` entry's rate
(`emulation = "veth"`): every byte between the datacenters crosses it, and is counted there.
Every process binds the address the file gives it; this module only reads and checks them, and
plans the names (deploy/topology.py builds and tears down).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from prfaas.deploy.config import DeploymentConfig, LinkConfig
from prfaas.errors import ConfigError
from prfaas.planner.fields import Table

PREFIX = "pfd"  # namespaces, bridges and veths: pfd<owner pid>...
IFNAME_MAX = 15


@dataclass(frozen=True, slots=True)
class DatacentersConfig:
    host: str  # this machine's address on the PD datacenter's bridge (clients, HAProxy)
    routers: tuple[str, ...]  # one address per router replica
    etcd: str
    prefix_len: int = 16


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and addresses of one deployment's namespaces (`tag` = PREFIX + owner pid)."""

    tag: str
    namespaces: dict[str, tuple[str, str, int]]  # process -> (namespace, address, datacenter)
    prefix_len: int
    host: str
    rate_gbps: float  # the inter-DC veth's tbf rate (emulated units)

    def bridge(self, dc: int) -> str:
        return f"{self.tag}b{dc}"

    def link_ends(self) -> tuple[str, str]:
        return f"{self.tag}x0", f"{self.tag}x1"

    def host_side(self, ns: str) -> str:
        return f"{ns}h"

    def unique(self) -> list[tuple[str, str, int]]:
        """Each namespace once (the WAN emulator shares the first router's)."""
        return list(dict.fromkeys(self.namespaces.values()))

    def devices(self) -> list[str]:
        """Host-side interfaces to delete (namespaces take their own ends with them)."""
        return [self.bridge(0), self.bridge(1), self.link_ends()[0]]


def datacenters_section(root: Table) -> DatacentersConfig | None:
    t = root.table("datacenters", optional=True)
    if t is None:
        return None
    routers = t.raw("routers")
    if not isinstance(routers, list) or not routers or not all(isinstance(r, str) for r in routers):
        raise t.fail("routers", "must be a non-empty array of addresses, one per router replica")
    cfg = DatacentersConfig(
        host=_address(t, t.string("host")),
        routers=tuple(_address(t, r) for r in routers),
        etcd=_address(t, t.string("etcd")),
        prefix_len=t.integer("prefix_len", default=16, minimum=8),
    )
    if cfg.prefix_len > 30:
        raise t.fail("prefix_len", f"must be at most 30, got {cfg.prefix_len}")
    t.finish()
    return cfg


def _address(t: Table, value: str) -> str:
    try:
        addr = ipaddress.IPv4Address(value)
    except ValueError:
        raise t.fail("datacenters", f"has {value!r}, which is not an IPv4 address") from None
    if addr.is_loopback or addr.is_unspecified:
        raise t.fail("datacenters", f"has {value}: each namespace needs a real address")
    return value


def veth_link(cfg: DeploymentConfig) -> LinkConfig | None:
    links = [link for link in cfg.links if link.emulation == "veth"]
    return links[0] if links else None


def check_datacenters(cfg: DeploymentConfig, dc: DatacentersConfig | None) -> None:
    """The file's addresses make one namespace per process, all in one subnet, none twice."""
    src, link = cfg.source, veth_link(cfg)
    if dc is None:
        if link is not None:
            raise ConfigError(f'{src}: a link with emulation = "veth" needs [datacenters]')
        return
    if len(cfg.clusters) != 2 or link is None or len(cfg.links) != 1:
        raise ConfigError(f"{src}: [datacenters] needs exactly two clusters joined by one link "
                          'with emulation = "veth"')
    if len(dc.routers) != cfg.router.replicas:
        raise ConfigError(f"{src}: field 'datacenters.routers' has {len(dc.routers)} addresses "
                          f"for [router] replicas = {cfg.router.replicas}")
    r = cfg.router
    if {r.host, r.control_host, r.advertise} != {dc.routers[0]}:
        raise ConfigError(f"{src}: [router] host, control_host and advertise must be "
                          f"datacenters.routers[0] ({dc.routers[0]})")
    net = ipaddress.IPv4Network(f"{dc.host}/{dc.prefix_len}", strict=False)
    seen: dict[str, str] = {}
    for name, addr in _addresses(cfg, dc):
        if addr in seen:
            raise ConfigError(f"{src}: {name} and {seen[addr]} both have address {addr}")
        if ipaddress.IPv4Address(addr) not in net:
            raise ConfigError(f"{src}: {name}'s address {addr} is outside {net}")
        seen[addr] = name
    for node in cfg.nodes:
        if node.advertise != node.host:
            raise ConfigError(f"{src}: node {node.name}: advertise must equal host in a "
                              "namespace (one address per namespace)")


def _addresses(cfg: DeploymentConfig, dc: DatacentersConfig) -> list[tuple[str, str]]:
    out = [("datacenters.host", dc.host), ("etcd", dc.etcd)]
    out += [(f"router replica {i}", a) for i, a in enumerate(dc.routers)]
    for node in cfg.nodes:
        try:
            ipaddress.IPv4Address(node.host)
        except ValueError:
            raise ConfigError(f"{cfg.source}: node {node.name}: host {node.host!r} must be an "
                              "IPv4 address with [datacenters]") from None
        out.append((f"node {node.name}", node.host))
    return out


def router_names(replicas: int) -> list[str]:
    """Process names of the router replicas (`prfaas up`, the chaos harness and the tests)."""
    return ["router", *(f"router-{i}" for i in range(1, replicas))]


def plan_topology(cfg: DeploymentConfig, owner_pid: int) -> Topology:
    """One namespace per process: the PD cluster's datacenter is 0, the other 1."""
    dc = cfg.datacenters
    link = veth_link(cfg)
    assert dc is not None and link is not None  # check_datacenters ran at load
    tag = f"{PREFIX}{owner_pid}"
    home = next(i for i, c in enumerate(cfg.clusters) if c.role == "pd")
    index = {c.name: (0 if i == home else 1) for i, c in enumerate(cfg.clusters)}
    members = [("etcd", dc.etcd, 0)]
    members += [(name, a, 0) for name, a in zip(router_names(len(dc.routers)), dc.routers,
                                                 strict=True)]
    members += [(n.name, n.host, index[n.cluster]) for n in cfg.nodes]
    spaces = {name: (f"{tag}n{i}", addr, d) for i, (name, addr, d) in enumerate(members)}
    spaces["wan"] = spaces["router"]  # the relays live where workers expect them
    if len(f"{tag}n{len(members)}h") > IFNAME_MAX:
        raise ConfigError(f"{cfg.source}: too many processes for interface names ({tag})")
    rate = link.gbps * cfg.engine.link_scale
    return Topology(tag, spaces, dc.prefix_len, dc.host, rate)
