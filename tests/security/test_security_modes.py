"""`prfaas up` with an API key (never on a child's command line) and the insecure mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import complete
from live_support import EMULATED_TOML, SHORT_PROMPT, write_config
from prfaas.deploy.supervisor import Deployment

pytestmark = pytest.mark.slow
KEY = "sk-from-the-environment-42"


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                out.append(int(stat.parent.name))
                todo.append(int(stat.parent.name))
    return out


def test_prfaas_up_with_an_api_key_from_the_environment(tmp_path: Path) -> None:
    env = {**os.environ, "PRFAAS_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "prfaas", "up", "--config", str(write_config(tmp_path))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first.startswith("prfaas is up: http://"):
            proc.kill()
            pytest.fail(f"prfaas up did not come up: {first!r}; {proc.communicate()[1]}")
        url = first.split()[3]
        hint = proc.stdout.readline()
        assert "Bearer $PRFAAS_API_KEY" in hint and KEY not in hint
        assert complete(url, SHORT_PROMPT, key=None).status_code == 401
        assert complete(url, SHORT_PROMPT, key=KEY).status_code == 200
        children = _tree(proc.pid)
        assert len(children) >= 5
        for pid in children:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            assert KEY.encode() not in cmdline
            assert b"--secret-hex" not in cmdline and b"BEGIN" not in cmdline
            # Identities travel as paths: --pki DIR, or etcd's --cert-file/--key-file. The
            # reaper (deploy/reaper.py) holds no identity: it reads what to clean on a pipe.
            reaper = b"-m prfaas.deploy.reaper" in cmdline
            assert b"--pki" in cmdline or b"--key-file" in cmdline or b"prfaas" not in cmdline \
                or reaper
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_insecure_mode_warns_and_serves_plain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = Deployment(write_config(tmp_path, EMULATED_TOML + "\n[security]\ninsecure = true\n"))
    dep.start(timeout_s=60)
    try:
        assert "insecure = true" in capsys.readouterr().err
        assert dep.pki_dir is None and dep.control_url.startswith("http://")
        assert httpx.get(dep.control_url + "/internal/state", timeout=5).status_code == 200
        assert complete(dep.url, SHORT_PROMPT, key=None).status_code == 200
    finally:
        dep.stop()


def test_the_run_folder_with_the_keys_is_removed_on_stop(tmp_path: Path) -> None:
    dep = Deployment(write_config(tmp_path))
    dep.start(timeout_s=60)
    pki = dep.pki_dir
    assert pki is not None and (pki / "router.key").exists() and not (pki / "ca.key").exists()
    assert ((pki / "router.key").stat().st_mode & 0o777) == 0o600
    dep.stop()
    assert not dep.run_dir.exists()
