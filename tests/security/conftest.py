"""A real `prfaas up` deployment (TLS control network, API keys, small caps) and the clients an
attacker would use against it; honest traffic runs alongside every attack."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # live_support

from live_support import EMULATED_TOML, LONG_PROMPT, SHORT_PROMPT, write_config
from prfaas.deploy.supervisor import Deployment
from prfaas.security.certs import init_ca, issue
from prfaas.security.tls import Pki

KEY = "sk-honest-client-0123456789"
OTHER_KEY = "sk-second-client-0123456789"
MAX_TOKENS = 64
MAX_BODY = 64 << 10
MAX_CONCURRENT = 3
SECURED_TOML = EMULATED_TOML + f"""
[security]
kv_tls = "cross"

[[security.api_keys]]
name = "honest"
key = "{KEY}"

[[security.api_keys]]
name = "second"
key = "{OTHER_KEY}"

[limits]
max_tokens = {MAX_TOKENS}
max_body_bytes = {MAX_BODY}
max_prompt_tokens = 4000
max_concurrent_per_key = {MAX_CONCURRENT}
"""


@pytest.fixture(scope="session")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(write_config(tmp_path_factory.mktemp("secured"), SECURED_TOML), fault_hooks=True)
    d.start(timeout_s=90)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An attacker's own CA with certificates named like the real identities."""
    folder = tmp_path_factory.mktemp("rogue")
    init_ca(folder)
    for name in ("router", "operator", "prfaas-0", "pd-p0", "pd-d0", "wan"):
        issue(folder, name)
    return folder


def complete(url: str, prompt: str, key: str | None = KEY, **extra: object) -> httpx.Response:
    body = {"model": "emu-model", "prompt": prompt, "max_tokens": 8, "temperature": 0, **extra}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/completions", json=body, headers=headers, timeout=30)


def as_identity(dep: Deployment, name: str, target: str, method: str, path: str,
                **kw: object) -> httpx.Response:
    """A call to `target`'s control listener presenting `name`'s (stolen or real) certificate."""
    assert dep.pki_dir is not None
    base = {"router": dep.control_url, "wan": dep.wan_url}.get(target) or dep.node_urls[target]
    with httpx.Client(verify=Pki(dep.pki_dir, name).client, timeout=10) as client:
        return client.request(method, base + path, extensions={"sni_hostname": target}, **kw)


class Honest:
    """Completions (local and offloaded) in a loop while a test attacks; all must succeed."""

    def __init__(self, url: str) -> None:
        self.url, self.stop, self.statuses = url, threading.Event(), []  # type: ignore[var-annotated]
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stop.is_set():
            prompt = f"[honest {i}] " + (LONG_PROMPT if i % 2 else SHORT_PROMPT)
            try:
                self.statuses.append(complete(self.url, prompt).status_code)
            except httpx.HTTPError as exc:
                self.statuses.append(repr(exc))
            i += 1
            time.sleep(0.02)


@pytest.fixture
def honest(dep: Deployment) -> Iterator[Honest]:
    h = Honest(dep.url)
    h.thread.start()
    try:
        yield h
    finally:
        time.sleep(0.3)
        h.stop.set()
        h.thread.join(30)
    assert h.statuses, "no honest request completed during the attack"
    assert all(s == 200 for s in h.statuses), h.statuses
