"""Starting the long-lived processes of a deployment: etcd, the WAN emulator, the router
replicas and HAProxy in front of them, and the [datacenters] namespaces they live in.

Each binds its own port (0 = any free one) and reports it through its ready file: picking a
"free" port here and binding it later races with every other socket on the machine. Once known,
a process's ports are pinned (`Deployment._pin`), so a restart brings it back where clients and
workers already dial.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from prfaas.deploy import haproxy
from prfaas.deploy.config import DeploymentConfig
from prfaas.deploy.datacenters import Topology
from prfaas.errors import ConfigError, DeploymentError
from prfaas.worker.wan import needs_wan

if TYPE_CHECKING:
    from prfaas.deploy.supervisor import Deployment


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url  # our own processes' ready files always carry one
    return port


def start_wan(dep: Deployment, pki: list[str], deadline: float) -> list[str]:
    """The WAN emulator, if the file has links; returns the routers' `--wan-url` argument.
    It binds its own port (0 = any free one) and reports it: picking a "free" port here and
    binding it later races with every other socket on the machine. Once known, the port is
    pinned, so a restarted emulator comes back on it (and on its relays' ports)."""
    if not needs_wan(dep.cfg):
        return []
    hooks = ["--fault-hooks"] if dep.fault_hooks else []
    state = ["--state-file", str(dep.run_dir / "wan-relays.json")]
    dep._spawn("wan", ["--wan", "--policy", dep.policy, *pki, *hooks, *state])
    ready = dep._wait_ready("wan", deadline)
    dep.wan_url = ready["url"]
    dep._pin("wan", ["--url", f"http://0:{_port(dep.wan_url)}"])
    dep.notes = list(ready.get("notes", []))
    for note in dep.notes:
        print(f"note: {note}", file=sys.stderr, flush=True)
    return ["--wan-url", dep.wan_url]

def start_routers(dep: Deployment, wan: list[str], pki: list[str], deadline: float) -> None:
    """`[router] replicas` routers; each pinned to the public and control ports it got."""
    r = dep.cfg.router
    port = r.port if r.replicas == 1 else 0  # with replicas, the file's port is the front's
    dc = dep.cfg.datacenters
    for i, name in enumerate(dep.router_names):
        host = ["--host", dc.routers[i]] if dc is not None else []
        url = f"http://0:{port}"  # only its port counts
        dep._spawn(name, ["--router", "--policy", dep.policy, "--url", url, *wan, *pki, *host])
    for name in dep.router_names:
        ready = dep._wait_ready(name, deadline)
        dep.router_urls.append(ready["url"])
        dep.control_urls.append(ready["control_url"])
        dep._pin(name, ["--url", ready["url"], "--control-port",
                         str(_port(ready["control_url"]))])
    dep.url, dep.control_url = dep.router_urls[0], dep.control_urls[0]

def start_front(dep: Deployment, deadline: float) -> None:
    """HAProxy in front of several replicas (when installed): its URL becomes the API URL."""
    r = dep.cfg.router
    if r.replicas == 1:
        return
    binary = haproxy.haproxy_binary()
    if binary is None:
        print(f"note: {r.replicas} router replicas without HAProxy ({haproxy.INSTALL_HINT}): "
              "clients take the replicas' URLs (prfaas bench --url A,B fails over)",
              file=sys.stderr, flush=True)
        return
    # With [datacenters] the front is on this machine's own address on the routers' bridge.
    host = dep.cfg.datacenters.host if dep.cfg.datacenters is not None else r.host
    bind = (host, r.port or haproxy.free_port(host))
    backends = [(str(urlsplit(u).hostname), _port(u)) for u in dep.router_urls]
    config = haproxy.write_config(
        dep.run_dir, bind, backends, r.request_timeout_s, dep.cfg.limits.max_body_bytes
    )
    dep._launch("haproxy", haproxy.command(binary, config))
    dep.url = f"http://{bind[0]}:{bind[1]}"
    wait_healthy(dep, deadline, [dep.url])

def start_etcd(dep: Deployment) -> str:
    """The cluster's etcd: the given URL, or one started in the run folder on the control
    network's address (never a public one), https with client certificates when the
    deployment has a PKI, each identity allowed to write only its own keys (cluster/access)."""
    if dep.etcd_url:
        return dep.etcd_url
    from prfaas.cluster.embedded import EmbeddedEtcd
    from prfaas.security.tls import OPERATOR, Pki

    tls = Pki(dep.pki_dir, "etcd") if dep.pki_dir is not None else None
    dep.etcd = EmbeddedEtcd(dep.run_dir, etcd_host(dep.cfg), tls=tls)
    with _namespace_of(dep.topology, "etcd"):  # etcd is born in its namespace, if it has one
        url = dep.etcd_url = str(dep.etcd.start())
    if dep.pki_dir is not None:  # each identity may write only its own keys (cluster/access)
        asyncio.run(_restrict(url, Pki(dep.pki_dir, OPERATOR), dep.cfg))
    # Supervised like the others: a restart reuses the same command line, so the same data
    # folder (the leases, policy and roles survive) and the same ports.
    proc = dep.etcd.proc
    assert proc is not None
    dep.procs["etcd"], dep.commands["etcd"] = proc, [str(a) for a in proc.args]
    if dep.reaper is not None:
        dep.reaper.order("pgid", proc.pid)
    return url


async def _restrict(url: str, operator: Any, cfg: DeploymentConfig) -> None:
    from prfaas.cluster import access
    from prfaas.cluster.client import connect

    client = await connect(url, operator)
    await access.enable(client, cfg.name, [n.name for n in cfg.nodes])


def etcd_host(cfg: DeploymentConfig) -> str:
    """Where the embedded etcd listens: the router's control address (private), not a wildcard;
    with [datacenters], its own namespace's address."""
    if cfg.datacenters is not None:
        return cfg.datacenters.etcd
    host = cfg.router.control_host
    return cfg.router.advertise if host in ("0.0.0.0", "::", "") else host


def etcd_ips(cfg: DeploymentConfig) -> tuple[str, ...]:
    """IP SANs of etcd's certificate (its gateway dials its own listen address and checks it)."""
    import ipaddress

    out = ["127.0.0.1"]
    with contextlib.suppress(ValueError):
        out.append(str(ipaddress.ip_address(etcd_host(cfg))))
    return tuple(dict.fromkeys(out))




# -- warm spares ----------------------------------------------------------------------------
def activate_spare(dep: Deployment, name: str) -> bool:
    """Hand `name`'s command line to its waiting spare (a line on its stdin); False if none."""
    from prfaas.deploy.supervisor import SPARE_DELAY_S

    spare = dep.standbys.pop(name, None)
    if spare is None or spare.poll() is not None or spare.stdin is None:
        return False
    (dep.run_dir / f"{name}.json").unlink(missing_ok=True)
    try:
        spare.stdin.write(b"go\n")
        spare.stdin.close()
    except OSError:
        return False
    dep.procs[name] = spare
    dep.spare_due[name] = time.monotonic() + SPARE_DELAY_S  # the next spare, a while later
    return True


def start_due_spares(dep: Deployment) -> None:
    """A spare starts a while after its router, not to compete with that router's own start."""
    now = time.monotonic()
    for name, due in list(dep.spare_due.items()):
        if now >= due and name not in dep.standbys:
            del dep.spare_due[name]
            dep._launch(name, dep.commands[name], standby=True)


# -- [datacenters] -------------------------------------------------------------------------
def check_root(cfg: DeploymentConfig) -> None:
    from prfaas.transfer.netns import netns_missing

    reason = netns_missing()
    if reason:
        raise ConfigError(f"{cfg.source}: [datacenters] puts every process in a network "
                          f"namespace, but {reason} (run `prfaas up` as root)")


def build_datacenters(dep: Deployment, top: Topology) -> None:
    """Namespaces, bridges and the shaped inter-DC veth; the reaper learns every name first."""
    from prfaas.deploy.topology import build, sweep_dead

    sweep_dead()  # left by a run whose supervisor and reaper were both killed
    if dep.reaper is not None:
        for ns, _addr, _dc in top.unique():
            dep.reaper.order("netns", ns)
        for dev in top.devices():
            dep.reaper.order("netns", dev)
    build(top)
    print(f"note: {len(top.unique())} namespaces on bridges {top.bridge(0)}/{top.bridge(1)}, "
          f"inter-datacenter veth {'/'.join(top.link_ends())} shaped by tc tbf at "
          f"{top.rate_gbps:g} Gbit/s", file=sys.stderr, flush=True)


def _namespace_of(top: Topology | None, name: str) -> contextlib.AbstractContextManager[None]:
    if top is None or name not in top.namespaces:
        return contextlib.nullcontext()
    from prfaas.deploy.topology import inside

    return inside(top.namespaces[name][0])


def preexec(top: Topology | None, name: str, then: Callable[[], None]) -> Callable[[], None]:
    """What a child runs between fork and exec: enter its namespace (if any), then `then`."""
    if top is None or name not in top.namespaces:
        return then
    from prfaas.deploy.topology import enter

    ns = top.namespaces[name][0]

    def run() -> None:
        enter(ns)
        then()

    return run


def make_pki(dep: Deployment) -> list[str]:
    """The `--pki` argument: the file's PKI folder, or a throwaway CA for this run (0600 keys
    in the run folder, deleted with it; the CA key is deleted once the certificates exist)."""
    sec = dep.cfg.security
    if sec.insecure:
        print("warning: [security] insecure = true: the control network is plain HTTP and "
              "unauthenticated", file=sys.stderr, flush=True)
        return []
    if sec.pki:
        dep.pki_dir = Path(sec.pki)
    else:
        from prfaas.security.certs import issue_all

        dep.pki_dir = dep.run_dir / "pki"
        names = ["router", "wan", "operator", "etcd", *(n.name for n in dep.cfg.nodes)]
        issue_all(dep.pki_dir, names, {"etcd": etcd_ips(dep.cfg)})
    return ["--pki", str(dep.pki_dir)]


def wait_healthy(dep: Deployment, deadline: float, urls: list[str] | None = None) -> None:
    """Until every router replica (or `urls`) reports every node registered."""
    pending, last = list(urls or dep.router_urls), ""
    with httpx.Client(timeout=5.0) as client:
        while pending and time.monotonic() < deadline:
            for name in dep.procs:
                dep.check_alive(name)
            try:
                state = client.get(f"{pending[0]}/health").json()
                if state.get("ok") and state.get("registered") == state.get("expected"):
                    pending.pop(0)
                    continue
                last = json.dumps(state)
            except (httpx.HTTPError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.1)
    if pending:
        raise DeploymentError(f"{pending[0]} not healthy in time; its last health: {last}")


def wait_planned(dep: Deployment, deadline: float) -> dict[str, Any]:
    """Until the router's warm-up pass (a real engine's startup plan) is over; the router's
    `control` state then (startup line, warm-up outcome). The pass has its own time limit
    ([control] warmup_s), after which the router keeps the file's values, so this only waits
    out a router that stopped answering."""
    from prfaas.deploy.planning import warmup_wanted

    if not warmup_wanted(dep.cfg):
        return {}
    control: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for name in dep.procs:
            dep.check_alive(name)
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            control = dep.control("GET", "/internal/state").json()["control"]
            if control.get("warmup") not in ("pending", "running"):
                return control
        time.sleep(0.2)
    raise DeploymentError(f"the router's warm-up did not finish in time: {control}")
