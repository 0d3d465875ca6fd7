"""Start every process of a deployment, wait until it is healthy, and stop it without orphans.

Each child runs in its own session (process group) so a stop signal reaches anything it spawned,
and asks the kernel to SIGTERM it if the supervisor dies first (PR_SET_PDEATHSIG), so even a
`kill -9` of `prfaas up` leaves no worker behind holding a port.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from prfaas.deploy.config import DeploymentConfig, load_deployment
from prfaas.deploy.netlinks import check_netns, netns_links, sweep
from prfaas.errors import PrfaasError
from prfaas.worker.wan import needs_wan

PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 5.0


class DeploymentError(PrfaasError):
    """A process of the deployment failed to start or become healthy."""


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Deployment:
    """One running deployment: `start()` returns the router URL, `stop()` ends every process."""

    def __init__(
        self,
        config_path: str | Path,
        policy: str | None = None,
        *,
        fault_hooks: bool = False,
        log_level: str = "WARNING",
        keep_run_dir: bool = False,
        etcd_url: str = "",
    ) -> None:
        self.config_path = str(config_path)
        self.cfg: DeploymentConfig = load_deployment(config_path)
        if policy:
            self.cfg = self.cfg.with_policy(policy)
        self.policy = self.cfg.policy.name
        self.netns = bool(netns_links(self.cfg))
        check_netns(self.cfg)  # root, ip and tc, before anything starts
        self.fault_hooks = fault_hooks
        self.log_level = log_level
        self.keep_run_dir = keep_run_dir
        self.run_dir = Path(tempfile.mkdtemp(prefix="prfaas-up-"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.spawn_args: dict[str, list[str]] = {}  # to start a crashed process again (healer.py)
        self.url = ""  # the public listener (OpenAI API)
        self.control_url = ""  # the router's control listener (mutual TLS)
        self.wan_url = ""
        self.pki_dir: Path | None = None  # None: insecure mode (plain HTTP control network)
        self.node_urls: dict[str, str] = {}
        self.transfer_ports: dict[str, int] = {}
        self.notes: list[str] = []  # what the WAN emulator built (and what it could not apply)
        self.etcd_url = etcd_url  # "": an embedded single-member etcd in the run folder
        self.etcd: Any = None

    # -- start -----------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> str:
        """Start etcd, then spawn every process (workers register in etcd; the router follows it),
        then wait until the router reports every node registered."""
        deadline = time.monotonic() + timeout_s
        try:
            secret_file = self.run_dir / "secret"
            secret_file.write_text(self.cfg.secret or secrets.token_hex(32))
            secret_file.chmod(0o600)
            pki = self._make_pki()
            etcd = ["--etcd", self._start_etcd()]
            wan = []
            # The WAN emulator and the router bind their own ports (0 = any free one) and report
            # the address they got: picking a "free" port here and binding it later races with
            # every other socket on the machine.
            if self.netns:
                sweep()  # namespaces left by a deployment whose WAN emulator was killed
            if needs_wan(self.cfg):
                hooks = ["--fault-hooks"] if self.fault_hooks else []
                self._spawn("wan", ["--wan", "--policy", self.policy, *pki, *hooks])
                ready = self._wait_ready("wan", deadline)
                self.wan_url = ready["url"]
                wan = ["--wan-url", ready["url"]]
                self.notes = list(ready.get("notes", []))
                for note in self.notes:
                    print(f"note: {note}", file=sys.stderr, flush=True)
            router_url = f"http://{self.cfg.router.host}:{self.cfg.router.port}"
            args = ["--router", "--policy", self.policy, "--url", router_url, *wan, *pki, *etcd]
            self._spawn("router", args)
            ready = self._wait_ready("router", deadline)
            self.url, self.control_url = ready["url"], ready["control_url"]
            extra = ["--fault-hooks"] if self.fault_hooks else []
            for node in self.cfg.nodes:
                self._spawn(
                    node.name,
                    [
                        "--node",
                        node.name,
                        *etcd,
                        "--policy",
                        self.policy,
                        "--secret-file",
                        str(secret_file),
                        *pki,
                        *extra,
                    ],
                )
            for name in self.procs:
                info = self._wait_ready(name, deadline)
                if name not in ("wan", "router"):
                    self.node_urls[name] = info["url"]
                    self.transfer_ports[name] = int(info.get("transfer_port", 0))
            self._wait_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _start_etcd(self) -> str:
        """The cluster's etcd: the given URL, or one started in the run folder on the control
        network's address (never a public one), https with client certificates when the
        deployment has a PKI, each identity allowed to write only its own keys (cluster/access)."""
        if self.etcd_url:
            return self.etcd_url
        import asyncio

        from prfaas.cluster.embedded import EmbeddedEtcd
        from prfaas.security.tls import OPERATOR, Pki

        tls = Pki(self.pki_dir, "etcd") if self.pki_dir is not None else None
        self.etcd = EmbeddedEtcd(self.run_dir, etcd_host(self.cfg), tls=tls)
        self.etcd_url = str(self.etcd.start())
        if self.pki_dir is not None:
            asyncio.run(_restrict(self.etcd_url, Pki(self.pki_dir, OPERATOR), self.cfg))
        return self.etcd_url

    def _make_pki(self) -> list[str]:
        """The `--pki` argument: the file's PKI folder, or a throwaway CA for this run (0600 keys
        in the run folder, deleted with it; the CA key is deleted once the certificates exist)."""
        sec = self.cfg.security
        if sec.insecure:
            print("warning: [security] insecure = true: the control network is plain HTTP and "
                  "unauthenticated", file=sys.stderr, flush=True)
            return []
        if sec.pki:
            self.pki_dir = Path(sec.pki)
        else:
            from prfaas.security.certs import issue_all

            self.pki_dir = self.run_dir / "pki"
            names = ["router", "wan", "operator", "etcd", *(n.name for n in self.cfg.nodes)]
            issue_all(self.pki_dir, names, {"etcd": etcd_ips(self.cfg)})
        return ["--pki", str(self.pki_dir)]

    def operator_client(self, timeout: float = 30.0) -> httpx.Client:
        """An HTTP client with the operator's certificate (for /internal/* and node calls)."""
        if self.pki_dir is None:
            return httpx.Client(timeout=timeout)
        from prfaas.security.tls import OPERATOR, Pki

        return httpx.Client(timeout=timeout, verify=Pki(self.pki_dir, OPERATOR).client)

    def control(self, method: str, path: str, node: str = "router", **kw: Any) -> httpx.Response:
        """Call the router's control listener (or a node's, or "wan") as the operator."""
        base = {"router": self.control_url, "wan": self.wan_url}.get(node) or self.node_urls[node]
        with self.operator_client() as client:
            return client.request(method, base + path, extensions={"sni_hostname": node}, **kw)

    def _spawn(self, name: str, args: list[str]) -> None:
        restart = name in self.spawn_args
        self.spawn_args[name] = args
        cmd = [
            sys.executable,
            "-m",
            "prfaas",
            "worker",
            "--config",
            self.config_path,
            "--ready-file",
            str(self.run_dir / f"{name}.json"),
            "--log-level",
            self.log_level,
            *args,
        ]
        log = (self.run_dir / f"{name}.log").open("ab" if restart else "wb")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()

    def respawn(self, name: str) -> None:
        """Start a process that exited again, with the arguments it was first started with."""
        self._spawn(name, self.spawn_args[name])

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise DeploymentError(
                f"{name} exited with status {proc.returncode} while starting:\n"
                + self.log_tail(name)
            )

    def _wait_ready(self, name: str, deadline: float) -> dict[str, Any]:
        path = self.run_dir / f"{name}.json"
        while time.monotonic() < deadline:
            self._check_alive(name)
            if path.exists():
                info: dict[str, Any] = json.loads(path.read_text())
                return info
            time.sleep(0.05)
        raise DeploymentError(f"{name} did not start in time:\n{self.log_tail(name)}")

    def _wait_healthy(self, deadline: float) -> None:
        last = ""
        with httpx.Client(timeout=5.0) as client:
            while time.monotonic() < deadline:
                for name in self.procs:
                    self._check_alive(name)
                try:
                    state = client.get(f"{self.url}/health").json()
                    if state.get("ok") and state.get("registered") == state.get("expected"):
                        return
                    last = json.dumps(state)
                except (httpx.HTTPError, ValueError) as exc:
                    last = str(exc)
                time.sleep(0.1)
        raise DeploymentError(f"deployment not healthy in time; last router health: {last}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.run_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- stop ------------------------------------------------------------------------------
    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one process group (fault tests)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, sig)

    def stop(self) -> None:
        """SIGTERM every process group, wait, then SIGKILL what is left; reap everything."""
        for name in reversed(list(self.procs)):
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        for name, proc in self.procs.items():
            self.kill(name, signal.SIGKILL)  # the group, even if its leader already exited
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=2.0)
        if self.etcd is not None:
            self.etcd.stop()
        if self.netns and "wan" in self.procs:
            sweep(self.procs["wan"].pid)  # what a killed WAN emulator could not tear down
        if not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}


async def _restrict(url: str, operator: Any, cfg: DeploymentConfig) -> None:
    from prfaas.cluster import access
    from prfaas.cluster.client import connect

    client = await connect(url, operator)
    await access.enable(client, cfg.name, [n.name for n in cfg.nodes])


def etcd_host(cfg: DeploymentConfig) -> str:
    """Where the embedded etcd listens: the router's control address (private), not a wildcard."""
    host = cfg.router.control_host
    return cfg.router.advertise if host in ("0.0.0.0", "::", "") else host


def etcd_ips(cfg: DeploymentConfig) -> tuple[str, ...]:
    """IP SANs of etcd's certificate (its gateway dials its own listen address and checks it)."""
    import ipaddress

    out = ["127.0.0.1"]
    with contextlib.suppress(ValueError):
        out.append(str(ipaddress.ip_address(etcd_host(cfg))))
    return tuple(dict.fromkeys(out))


def start_deployment(
    config_path: str | Path, policy: str | None = None, **kw: object
) -> tuple[str, Callable[[], None]]:
    """Start a deployment for a test or a benchmark: returns (router URL, stop)."""
    from prfaas.deploy.vllm_nodes import VllmDeployment, is_vllm_file

    if is_vllm_file(Path(config_path)):  # engine = "vllm" (deploy/vllm_nodes.py)
        vdep = VllmDeployment(Path(config_path), policy)
        return vdep.start(), vdep.stop
    dep = Deployment(config_path, policy, **kw)  # type: ignore[arg-type]
    url = dep.start()
    return url, dep.stop
