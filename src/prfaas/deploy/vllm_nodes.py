"""`prfaas up` for `engine = "vllm"` files: vLLM instances with the connector, then the router."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx

from prfaas.errors import PrfaasError, UsageError
from prfaas.process_groups import die_with_parent, stop_groups
from prfaas.router.vllm_nodes import VllmFleet, VllmNode, fleet_toml, load_fleet

CONNECTOR = "prfaas.integrations.vllm.connector"
# vLLM's engine core and workers are children of the API server: give them time to exit.
STOP_GRACE_S = 30.0


class VllmDeploymentError(PrfaasError):
    """A vLLM instance or the router failed to start."""


def is_vllm_file(path: Path) -> bool:
    """Whether a deployment file is a vLLM fleet (top-level `engine = "vllm"`)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get("engine") == "vllm"
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # the regular loader reports what is wrong with it


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class VllmDeployment:
    """Nodes without `url` are started here (`port`, `kv_port`, `host`); the others are external
    instances, started by their operator with the flags `command()` shows."""

    def __init__(self, path: Path, policy: str | None = None, *,
                 run_dir: Path | None = None) -> None:
        self.raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        self.fleet: VllmFleet = load_fleet(Path(path))
        if policy:
            self.fleet.policy = policy
        self.launch = {str(n["name"]): n for n in self.raw.get("node", []) if not n.get("url")}
        self.vllm_python = str(self.raw.get("vllm_python") or os.environ.get("PRFAAS_VLLM_PY")
                               or ".venv-vllm/bin/python")
        if self.launch and not Path(self.vllm_python).exists():
            raise UsageError(f"vLLM python {self.vllm_python} not found: run `make vllm-env` or "
                             "set vllm_python in the file")
        self.keep = run_dir is not None
        self.run_dir = run_dir or Path(tempfile.mkdtemp(prefix="prfaas-vllm-"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.secret_file, self.pki_dir = self._secrets()
        except BaseException:
            if not self.keep:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise
        self.kv_ports: dict[str, int] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""

    # -- configuration -----------------------------------------------------------------------
    def _secrets(self) -> tuple[Path, Path | None]:
        """The transfer secret and the PKI: the file's (shared with external instances) or a
        throwaway pair in the run folder (0600; the CA key is deleted once certificates exist)."""
        external = [n for n in self.fleet.nodes if n not in self.launch]
        given = self.raw.get("secret_file"), self.raw.get("pki_dir")
        if external and not all(given):
            raise UsageError(f"external nodes ({', '.join(external)}) need secret_file and pki_dir "
                             "in the file: their connectors must share them")
        tls = bool(self.raw.get("kv_tls", True))
        if all(given):
            return Path(str(given[0])), Path(str(given[1])) if tls else None
        secret = self.run_dir / "transfer.secret"
        secret.write_text(secrets.token_hex(32))
        secret.chmod(0o600)
        if not tls:
            return secret, None
        from prfaas.security.certs import issue_all

        pki = self.run_dir / "pki"
        issue_all(pki, sorted({n.engine_id for n in self.fleet.nodes.values()}))
        return secret, pki

    def stats_path(self, name: str) -> Path:
        return self.run_dir / f"kv-{name}.jsonl"

    def _host(self, name: str) -> str:
        return str(self.launch[name].get("host", "127.0.0.1"))

    def _kv_addr(self, node: VllmNode) -> str | None:
        """Where the node's connector receives KV: every started node listens (prefill nodes
        receive cache pulls); an external node gives `kv_addr` (required for decode nodes)."""
        if node.name in self.launch:
            return f"{self._host(node.name)}:{self.kv_ports[node.name]}"
        addr = self.raw_node(node.name).get("kv_addr")
        if not addr and node.role == "decode":
            raise UsageError(f"[[node]] {node.name}: an external decode node needs kv_addr "
                             "(where its connector listens)")
        return str(addr) if addr else None

    def raw_node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.raw.get("node", []) if n.get("name") == name)

    def connector_extra(self, node: VllmNode) -> dict[str, Any]:
        extra: dict[str, Any] = {"engine_id": node.engine_id,
                                 "secret_file": str(self.secret_file),
                                 "stats_path": str(self.stats_path(node.name)),
                                 "load_timeout_s": float(self.raw.get("load_timeout_s", 30.0))}
        if self.pki_dir is not None:
            extra["pki_dir"] = str(self.pki_dir)
        extra["listen"] = self._kv_addr(node)
        if node.role == "prefill":  # pushes to decode nodes, and to prefill nodes (cache pulls)
            addrs = {d.engine_id: self._kv_addr(d) for d in self.fleet.nodes.values()
                     if d.name != node.name}
            extra["peers"] = {e: a for e, a in addrs.items() if a is not None}
        return extra

    def command(self, node: VllmNode) -> list[str]:
        """The vLLM server's command line (no secret on it: the connector reads files)."""
        kvt = {"kv_connector": "PrfaasConnector", "kv_connector_module_path": CONNECTOR,
               "kv_role": "kv_both", "kv_load_failure_policy": "recompute",
               "kv_connector_extra_config": self.connector_extra(node)}
        events = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": self.fleet.events_bind, "topic": f"kv@{node.name}"}
        port = node.url.rsplit(":", 1)[1]
        return [self.vllm_python, "-m", "vllm.entrypoints.openai.api_server",
                "--model", self.fleet.model, "--host", self._host(node.name), "--port", port,
                "--no-disable-hybrid-kv-cache-manager",
                "--kv-transfer-config", json.dumps(kvt), "--kv-events-config", json.dumps(events),
                *[str(a) for a in self.raw.get("vllm_args", [])]]

    def _resolve_ports(self) -> None:
        """Port 0 (and a missing kv_port) become free ports; node URLs follow."""
        if not self.fleet.events_bind:
            self.fleet.events_bind = f"tcp://127.0.0.1:{_free_port('127.0.0.1')}"
        for name, raw in self.launch.items():
            node, host = self.fleet.nodes[name], self._host(name)
            port = int(raw.get("port", 0)) or _free_port(host)
            node.url = f"http://{host}:{port}"
            self.kv_ports[name] = int(raw.get("kv_port", 0)) or _free_port(host)

    # -- processes ---------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = (self.run_dir / f"{name}.log").open("wb")
        # Own session: vLLM forks an engine core and workers, which must die with it.
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True, preexec_fn=die_with_parent)
        log.close()

    def _env(self) -> dict[str, str]:
        src = str(Path(__file__).resolve().parents[2])  # this prfaas, also inside .venv-vllm
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        env.update({str(k): str(v) for k, v in self.raw.get("vllm_env", {}).items()})
        return env

    def start(self, timeout_s: float = 900.0) -> str:
        """Start the router (it binds the KV-event socket) and every local vLLM instance; wait
        until all answer /health. Returns the router's URL."""
        deadline = time.monotonic() + timeout_s
        try:
            self._resolve_ports()
            resolved = self.run_dir / "router.toml"
            resolved.write_text(fleet_toml(self.fleet))
            host = str(self.raw.get("router_host", "127.0.0.1"))
            port = int(self.raw.get("router_port", 0)) or _free_port(host)
            self._spawn("router", [sys.executable, "-m", "prfaas.router.vllm_serve",
                                   str(resolved), "--host", host, "--port", str(port)],
                        self._env())
            self.url = f"http://{host}:{port}"
            for name in self.launch:
                self._spawn(name, self.command(self.fleet.nodes[name]), self._env())
            self._wait(self.url, "router", deadline)
            for name in self.launch:
                self._wait(self.fleet.nodes[name].url, name, deadline)
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait(self, url: str, name: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise VllmDeploymentError(f"{name} exited with {self.procs[name].returncode}:\n"
                                          + self.log_tail(name))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(1.0)
        raise VllmDeploymentError(f"{name} not ready in time:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = self.run_dir / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal one process group (SIGKILL: a crash, as the fallback test needs)."""
        with contextlib.suppress(ProcessLookupError, PermissionError, KeyError):
            os.killpg(self.procs[name].pid, sig)

    def stop(self) -> None:
        """SIGTERM every group, wait, SIGKILL what is left (engine cores included), reap all."""
        stop_groups(self.procs, STOP_GRACE_S, reap_s=5.0)
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def run_up(path: Path, policy: str | None, timeout_s: float, keep_logs: bool) -> int:
    """`prfaas up --config VLLM.toml`: start, print the URL, serve until Ctrl-C / SIGTERM."""

    def interrupt(_signo: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    dep = VllmDeployment(path, policy)
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        print(f"starting {len(dep.launch)} vLLM instances + router from {path} "
              f"(policy {dep.fleet.policy}, engine vllm)...", file=sys.stderr, flush=True)
        url = dep.start(timeout_s=max(timeout_s, 600.0))  # vLLM takes minutes on CPUs
        print(f"prfaas is up: {url}  (OpenAI API at {url}/v1; vLLM decisions at "
              f"{url}/internal/vllm)\nCtrl-C stops every process.", flush=True)
        while all(p.poll() is None for p in dep.procs.values()):
            time.sleep(0.5)
        dead = [n for n, p in dep.procs.items() if p.poll() is not None]
        print(f"warning: {', '.join(dead)} exited; stopping", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping...", file=sys.stderr)
        return 0
    finally:
        for sig in previous:  # a second Ctrl-C must not interrupt the stop itself
            signal.signal(sig, signal.SIG_IGN)
        dep.keep = keep_logs
        dep.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keep_logs:
            print(f"logs kept in {dep.run_dir}", file=sys.stderr)
