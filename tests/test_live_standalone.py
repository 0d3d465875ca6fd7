"""`prfaas wan`, `prfaas router` and `prfaas worker --node` run standalone, as on separate hosts:
each given only the deployment file, the PKI folder and the addresses of the others."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from live_support import LONG_PROMPT, SHORT_PROMPT, complete, write_config
from prfaas.cli import main

SRC = Path(__file__).parents[1] / "src"


def _start(tmp: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    log = (tmp / f"{name}.log").open("wb")
    cmd = [sys.executable, "-m", "prfaas", *args, "--ready-file", str(tmp / f"{name}.json")]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _ready(tmp: Path, name: str, proc: subprocess.Popen[bytes]) -> dict[str, str]:
    path = tmp / f"{name}.json"
    deadline = time.monotonic() + 60
    while not path.exists():
        assert proc.poll() is None, (tmp / f"{name}.log").read_text()
        assert time.monotonic() < deadline, f"{name} not ready"
        time.sleep(0.05)
    info: dict[str, str] = json.loads(path.read_text())
    return info


needs_etcd = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="etcd not installed (apt-get install etcd-server)"
)


def test_standalone_commands_have_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("router", "wan", "worker"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "example" in out and "--config" in out and "--pki" in out, cmd
    bad_port = ["--config", "x.toml", "--etcd", "http://127.0.0.1:1", "--port", "70000"]
    assert main(["router", *bad_port]) == 2


@pytest.mark.slow
@needs_etcd
def test_a_deployment_assembled_from_standalone_processes_serves(tmp_path: Path) -> None:
    from prfaas.cluster.embedded import EmbeddedEtcd
    from prfaas.security.certs import issue_all
    from prfaas.security.tls import Pki

    config = write_config(tmp_path)
    pki = tmp_path / "pki"
    names = ["router", "wan", "operator", "etcd", "prfaas-0", "pd-p0", "pd-d0"]
    issue_all(pki, names, {"etcd": ("127.0.0.1",)})
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123456789abcdef")
    etcd = EmbeddedEtcd(tmp_path, tls=Pki(pki, "etcd"))
    common = ["--config", str(config), "--pki", str(pki), "--etcd", etcd.start()]
    procs = []
    try:
        procs.append(wan := _start(tmp_path, "wan", "wan", *common[:4]))
        wan_url = _ready(tmp_path, "wan", wan)["url"]
        procs.append(router := _start(tmp_path, "router", "router", *common,
                                      "--wan-url", wan_url, "--port", "0"))
        info = _ready(tmp_path, "router", router)
        for node in ("prfaas-0", "pd-p0", "pd-d0"):
            procs.append(_start(tmp_path, node, "worker", *common, "--node", node,
                                "--secret-file", str(secret)))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                health = httpx.get(f"{info['url']}/health", timeout=2).json()
                if health.get("registered") == 3:
                    break
            time.sleep(0.2)
        assert complete(info["url"], SHORT_PROMPT).status_code == 200
        assert complete(info["url"], LONG_PROMPT).status_code == 200
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:  # (this test is about serving: a slow stop is killed, not judged)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        etcd.stop()
