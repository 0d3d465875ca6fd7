"""Netns links of a deployment: the startup check, the namespaces' names, and the stale sweep.

The WAN emulator builds one `prfaas.transfer.netns.NetnsLink` per `emulation = "netns"` link,
tagged `pfu<WAN pid>l<link index>` (namespaces `...a`/`...b`, veth `...va`/`...vb`), and tears
them down when it exits. The supervisor is the backstop: at stop it deletes whatever its WAN
process left (e.g. after a SIGKILL), and at start whatever a dead WAN process left behind.
"""

from __future__ import annotations

import re
from pathlib import Path

from prfaas.deploy.config import DeploymentConfig, LinkConfig
from prfaas.errors import ConfigError

PREFIX = "pfu"
_NAME = re.compile(rf"^{PREFIX}(\d+)l(\d+)(a|b|va|vb)$")
IFNAME_MAX = 15  # Linux interface names: IFNAMSIZ - 1


def netns_links(cfg: DeploymentConfig) -> list[tuple[int, LinkConfig]]:
    return [(i, link) for i, link in enumerate(cfg.links) if link.emulation == "netns"]


def link_tag(owner_pid: int, index: int) -> str:
    tag = f"{PREFIX}{owner_pid}l{index}"
    if len(tag) + 2 > IFNAME_MAX:
        raise ConfigError(f"netns link {index}: interface name {tag}va is too long")
    return tag


def check_netns(cfg: DeploymentConfig) -> None:
    """A one-line ConfigError when the file asks for netns links this machine cannot build."""
    links = netns_links(cfg)
    if not links:
        return
    from prfaas.transfer.netns import netns_missing

    reason = netns_missing()
    if reason:
        _, link = links[0]
        raise ConfigError(
            f'{cfg.source}: link {link.src}->{link.dst} has emulation = "netns", but {reason} '
            '(run `prfaas up` as root, or use emulation = "shaper")'
        )


def _owner_alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"prfaas" in cmdline  # a reused pid of another program does not own it


def sweep(owner_pid: int | None = None) -> list[str]:
    """Delete this prefix's namespaces (and veths stranded on the host) of `owner_pid`, or,
    with None, of every owner that no longer runs. Returns what it deleted."""
    from prfaas.transfer.netns import delete_link, delete_namespace, namespaces, root_links

    def doomed(name: str) -> bool:
        m = _NAME.match(name)
        if m is None:
            return False
        pid = int(m.group(1))
        return pid == owner_pid if owner_pid is not None else not _owner_alive(pid)

    gone = [ns for ns in sorted(namespaces()) if doomed(ns)]
    for ns in gone:
        delete_namespace(ns)
    stranded = [dev for dev in sorted(root_links()) if doomed(dev)]
    for dev in stranded:
        delete_link(dev)
    return gone + stranded
