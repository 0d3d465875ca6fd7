"""Helpers for the live-deployment tests (not a test module)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import httpx

from prfaas.deploy.supervisor import Deployment

# A small emulated deployment: the paper's profiles, time-scaled 20x so requests take milliseconds.
EMULATED_TOML = """
[deployment]
name = "emulated-test"
block_tokens = 16

[engine]
kind = "emulated"
model = "emu-model"
kv_profile = "paper-table5"
num_layers = 4
payload_scale = 0.0001
time_scale = 20.0
decode_chunk_tokens = 2

[policy]
name = "prfaas"

[policy.params]
threshold_tokens = 64
min_pull_tokens = 16
latency_routing = false  # these tests pin the threshold rule (test_policy_latency: the other)

[router]
heartbeat_s = 0.1
dead_after_s = 1.0
request_timeout_s = 20.0

[[clusters]]
name = "prfaas"
role = "prfaas"

[[clusters.nodes]]
name = "prfaas-0"
role = "prefill"
hardware = "H200"
pool_gib = 64

[[clusters]]
name = "pd"
role = "pd"

[[clusters.nodes]]
name = "pd-p0"
role = "prefill"
hardware = "H20"
pool_gib = 64

[[clusters.nodes]]
name = "pd-d0"
role = "decode"
hardware = "H20"
pool_gib = 64

[[links]]
src = "prfaas"
dst = "pd"
gbps = 100
rtt_ms = 20
"""

LONG_PROMPT = "the quick brown fox jumps over the lazy dog " * 4  # > 64 tokens: offloaded
SHORT_PROMPT = "hello there"  # <= 64 tokens: local PD


def write_config(tmp: Path, text: str = EMULATED_TOML, name: str = "dep.toml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def complete(
    url: str, prompt: str, max_tokens: int = 8, timeout: float = 30.0, **extra: object
) -> httpx.Response:
    body = {
        "model": extra.pop("model", "emu-model"),
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        **extra,
    }
    return httpx.post(f"{url}/v1/completions", json=body, timeout=timeout)


def state(dep: Deployment) -> dict[str, object]:
    """The router's /internal/state, asked on its control listener with the operator's cert."""
    resp = dep.control("GET", "/internal/state", timeout=5)
    resp.raise_for_status()
    result: dict[str, object] = resp.json()
    return result


def operator_post(dep: Deployment, path: str, body: object, timeout: float = 30.0) -> None:
    """POST to the router's control listener as the operator; fails the test on an error."""
    dep.control("POST", path, json=body, timeout=timeout).raise_for_status()


def arm_fault(dep: Deployment, node: str, kind: str, **kw: object) -> None:
    resp = dep.control("POST", "/fault", node=node, json={"kind": kind, **kw}, timeout=5)
    resp.raise_for_status()


def process_gone(pid: int) -> bool:
    """Exited and reaped, and its process group is empty."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return not Path(f"/proc/{pid}").exists()
    return False


def port_free(url: str) -> bool:
    port = urlparse(url).port
    assert port is not None
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not "in use"
        try:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        except OSError:
            return False
    return True
