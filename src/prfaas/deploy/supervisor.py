"""Start every process of a deployment, wait until it is healthy, and stop it without orphans.

Each child runs in its own session (process group) so a stop signal reaches anything it spawned,
and asks the kernel to SIGTERM it if the supervisor dies first (PR_SET_PDEATHSIG). A reaper
process (deploy/reaper.py) is the backstop for a `kill -9` of `prfaas up`: it kills every
group, deletes the namespaces and removes the run folder with its secrets. Routers and the WAN
emulator are pinned to the ports they first got, so a restart (deploy/healer.py) brings them
back where clients and workers already dial.
"""

from __future__ import annotations

import contextlib
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

from prfaas.deploy import launch
from prfaas.deploy.config import DeploymentConfig, load_deployment
from prfaas.deploy.datacenters import plan_topology, router_names
from prfaas.deploy.netlinks import check_netns, netns_links, sweep
from prfaas.deploy.reaper import Reaper
from prfaas.errors import DeploymentError
from prfaas.process_groups import die_with_parent, stop_groups

STOP_GRACE_S = 5.0
SPARE_DELAY_S = 3.0  # a router's warm spare starts this long after the router


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
        self.spawn_args: dict[str, list[str]] = {}  # prfaas processes' options
        self.pins: dict[str, dict[str, str]] = {}  # options pinned for restarts (their ports)
        self.commands: dict[str, list[str]] = {}  # to start a crashed process again (healer.py)
        self.reaper: Reaper | None = None
        self.standbys: dict[str, subprocess.Popen[bytes]] = {}  # routers' warm spares
        self.spare_due: dict[str, float] = {}  # when to start a router's next spare
        self.router_names = router_names(self.cfg.router.replicas)
        # [datacenters]: every process in a namespace of its own (deploy/topology.py)
        self.topology = plan_topology(self.cfg, os.getpid()) if self.cfg.datacenters else None
        if self.topology is not None:
            launch.check_root(self.cfg)
        self.router_urls: list[str] = []  # each replica's public listener
        self.control_urls: list[str] = []  # each replica's control listener
        self.url = ""  # the public API: HAProxy in front of replicas, else the router
        self.control_url = ""  # the (first) router's control listener (mutual TLS)
        self.wan_url = ""
        self.pki_dir: Path | None = None  # None: insecure mode (plain HTTP control network)
        self.node_urls: dict[str, str] = {}
        self.transfer_ports: dict[str, int] = {}
        self.notes: list[str] = []  # what the WAN emulator built (and what it could not apply)
        self.etcd_url = etcd_url  # "": an embedded single-member etcd in the run folder
        self.etcd: Any = None
        self.planned: dict[str, Any] = {}  # the router's plan after a warm-up pass ({}: none)

    # -- start -----------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> str:
        """Start etcd, then spawn every process (workers register in etcd; the routers follow
        it), then wait until every router replica reports every node registered."""
        deadline = time.monotonic() + timeout_s
        try:
            # First, so that even a `kill -9` of this process from here on leaves nothing.
            self.reaper = Reaper()
            doomed = ["secret", "pki"] if self.keep_run_dir else [""]  # logs stay if asked
            for part in doomed:
                self.reaper.order("path", self.run_dir / part if part else self.run_dir)
            secret_file = self.run_dir / "secret"
            secret_file.write_text(self.cfg.secret or secrets.token_hex(32))
            secret_file.chmod(0o600)
            pki = launch.make_pki(self)
            if self.topology is not None:
                launch.build_datacenters(self, self.topology)
            etcd = ["--etcd", launch.start_etcd(self)]
            if self.netns:
                sweep()  # namespaces left by a deployment whose WAN emulator was killed
            wan = launch.start_wan(self, pki, deadline)
            launch.start_routers(self, [*wan, *etcd], pki, deadline)
            self._start_workers(etcd, secret_file, pki, deadline)
            launch.wait_healthy(self, deadline)
            self.planned = launch.wait_planned(self, deadline)  # a real engine's warm-up
            launch.start_front(self, deadline)
            self.spare_due = dict.fromkeys(self.router_names, time.monotonic() + SPARE_DELAY_S)
        except BaseException:
            self.stop()
            raise
        return self.url

    @property
    def plan_line(self) -> str:
        """The router's startup line after its warm-up pass ("": no pass ran)."""
        return str(self.planned.get("startup", ""))

    def worker_groups(self) -> dict[str, list[str]]:
        """Process name -> the nodes it runs: each node alone, or `nodes_per_process` together."""
        names = [n.name for n in self.cfg.nodes]
        k = self.cfg.nodes_per_process
        if k <= 1:
            return {name: [name] for name in names}
        return {f"workers-{i // k}": names[i : i + k] for i in range(0, len(names), k)}

    def _start_workers(
        self, etcd: list[str], secret_file: Path, pki: list[str], deadline: float
    ) -> None:
        extra = ["--fault-hooks"] if self.fault_hooks else []
        groups = self.worker_groups()
        for proc, nodes in groups.items():
            self._spawn(proc, [
                *(a for n in nodes for a in ("--node", n)), *etcd,
                "--policy", self.policy, "--secret-file", str(secret_file), *pki, *extra,
            ])  # fmt: skip
        for proc, nodes in groups.items():
            info = self._wait_ready(proc, deadline)
            for name, node_info in info.get("nodes", {nodes[0]: info}).items():
                self.node_urls[name] = node_info["url"]
                self.transfer_ports[name] = int(node_info.get("transfer_port", 0))

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
        """Start one prfaas process (router, WAN emulator or worker node)."""
        self.spawn_args[name] = args
        self._launch(name, self._worker_cmd(name, args))

    def _worker_cmd(self, name: str, args: list[str]) -> list[str]:
        return [
            sys.executable, "-m", "prfaas", "worker", "--config", self.config_path,
            "--ready-file", str(self.run_dir / f"{name}.json"), "--log-level", self.log_level,
            *args,
        ]  # fmt: skip

    def _pin(self, name: str, args: list[str]) -> None:
        """Options a restart of `name` gets (the ports it had): sets each `--opt value` in its
        command line; `spawn_args` keeps what it was first started with."""
        pins = self.pins.setdefault(name, {})
        pins.update(zip(args[::2], args[1::2], strict=True))
        pinned = list(self.spawn_args[name])
        for opt, value in pins.items():
            if opt in pinned:
                pinned[pinned.index(opt) + 1] = value
            else:
                pinned += [opt, value]
        self.commands[name] = self._worker_cmd(name, pinned)

    def _launch(self, name: str, cmd: list[str], standby: bool = False) -> None:
        restart = name in self.commands
        if not standby:
            self.commands[name] = cmd
            (self.run_dir / f"{name}.json").unlink(missing_ok=True)  # a stale address
        log = (self.run_dir / f"{name}.log").open("ab" if restart else "wb")
        proc = subprocess.Popen(
            [*cmd, "--standby"] if standby else cmd,
            stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=launch.preexec(self.topology, name, die_with_parent),
        )
        log.close()
        if standby:
            self.standbys[name] = proc
        else:
            self.procs[name] = proc
        if self.reaper is not None:
            self.reaper.order("pgid", proc.pid)
            if name == "wan" and self.netns:
                self.reaper.order("netns-owner", proc.pid)

    def respawn(self, name: str) -> None:
        """Start a process that exited again, with its original arguments and its pinned ports:
        a router's warm spare if one is waiting (no import time), else a fresh process."""
        if launch.activate_spare(self, name):
            return
        self._launch(name, self.commands[name])
        if name in self.router_names:
            self.spare_due[name] = time.monotonic() + SPARE_DELAY_S

    def maintain(self) -> None:
        """Start the routers' warm spares that are due (called by the healer's ticks)."""
        launch.start_due_spares(self)

    def check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise DeploymentError(
                f"{name} exited with status {proc.returncode} while starting:\n"
                + self.log_tail(name)
            )

    def _wait_ready(self, name: str, deadline: float) -> dict[str, Any]:
        path = self.run_dir / f"{name}.json"
        while time.monotonic() < deadline:
            self.check_alive(name)
            if path.exists():
                info: dict[str, Any] = json.loads(path.read_text())
                return info
            time.sleep(0.05)
        raise DeploymentError(f"{name} did not start in time:\n{self.log_tail(name)}")

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
        for spare in self.standbys.values():  # idle spares: no grace needed
            with contextlib.suppress(ProcessLookupError):
                os.killpg(spare.pid, signal.SIGKILL)
            spare.wait()
        self.standbys.clear()
        stop_groups(self.procs, STOP_GRACE_S, reap_s=2.0)
        if self.etcd is not None:
            self.etcd.stop()
        if self.netns and "wan" in self.procs:
            sweep(self.procs["wan"].pid)  # what a killed WAN emulator could not tear down
        if self.topology is not None:
            from prfaas.deploy.topology import teardown

            teardown(self.topology)
        if not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        if self.reaper is not None:
            self.reaper.dismiss()  # everything is clean: it leaves without touching anything
            self.reaper = None

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self.procs.items()}


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
