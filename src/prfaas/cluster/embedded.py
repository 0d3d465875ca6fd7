"""A single-member etcd for one-machine deployments and tests, in a run folder of its own.

With a PKI (`tls`: the `etcd` identity of the cluster CA) it serves https and accepts only
clients that present a certificate of the same CA (`--client-cert-auth`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx

from prfaas.errors import PrfaasError
from prfaas.process_groups import die_with_parent
from prfaas.security.tls import Pki

INSTALL_HINT = "install it with `apt-get install etcd-server` (Debian/Ubuntu) or put `etcd` on PATH"


class EtcdError(PrfaasError):
    """etcd is missing, would not start, or stopped answering."""


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise EtcdError(f"the etcd server binary was not found; {INSTALL_HINT}")
    return path


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedEtcd:
    """`start()` runs etcd on loopback (data in `run_dir/etcd`); `stop()` ends it and its data.

    etcd cannot report a port it picked itself, so two free ports are chosen and etcd started; if
    another process took one in between, etcd exits and the start is retried with new ports.
    """

    def __init__(self, run_dir: Path, host: str = "127.0.0.1", name: str = "prfaas",
                 tls: Pki | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.host = host
        self.name = name
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None
        self.client_port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.client_port}"

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", str(self.tls.cert), "--key-file", str(self.tls.key),
                "--trusted-ca-file", str(self.tls.ca), "--client-cert-auth"]

    def start(self, timeout_s: float = 20.0, attempts: int = 3) -> str:
        for _ in range(attempts):
            if self._try_start(timeout_s):
                return self.url
        raise EtcdError(f"etcd did not start; its log: {self._log_tail()}")

    def _try_start(self, timeout_s: float) -> bool:
        self.client_port, peer = _free_port(self.host), _free_port(self.host)
        data = self.run_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True, mode=0o700)
        peer_url = f"http://{self.host}:{peer}"
        args = [
            etcd_binary(), "--name", self.name, "--data-dir", str(data / "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{self.name}={peer_url}", "--log-level", "warn",
            *self._tls_args(),
        ]  # fmt: skip
        log = (self.run_dir / "etcd.log").open("ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True,
                                     preexec_fn=die_with_parent)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # e.g. a port was taken meanwhile: retry with new ones
            if self.healthy():
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def healthy(self) -> bool:
        try:
            verify = self.tls.client if self.tls is not None else True
            reply = httpx.get(f"{self.url}/health", timeout=1.0, verify=verify)
        except httpx.HTTPError:
            return False
        return reply.status_code == 200 and reply.json().get("health") == "true"

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.run_dir / "etcd.log").read_text(errors="replace")[-600:].strip()
        return "(no log)"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5.0)
        self.proc = None
        shutil.rmtree(self.run_dir / "etcd", ignore_errors=True)
