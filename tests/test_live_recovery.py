"""Decode-failure recovery, live: a dead decode node's streams go on, token-exact, elsewhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from live_support import EMULATED_TOML, arm_fault, write_config
from prfaas.deploy.supervisor import Deployment
from prfaas.worker.bytetok import ByteTokenizer
from prfaas.worker.emulated import emulated_token, prompt_seed

pytestmark = pytest.mark.slow
TWO_DECODE = EMULATED_TOML.replace(
    "[[links]]",
    '[[clusters.nodes]]\nname = "pd-d1"\nrole = "decode"\nhardware = "H20"\npool_gib = 64\n\n'
    "[[links]]",
    1,
)
MAX_TOKENS = 400


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(write_config(tmp_path, TWO_DECODE), fault_hooks=True)
    dep.start(timeout_s=60)
    try:
        yield dep
    finally:
        dep.stop()


def expected(prompt: str, n: int) -> str:
    tok = ByteTokenizer()
    seed = prompt_seed(tok.encode(prompt), 0, 0.0)
    return tok.decode([emulated_token(seed, i) for i in range(n)])


def stream(url: str, prompt: str) -> tuple[str, bool, str]:
    """(text, saw [DONE], first in-band error) of one streaming completion."""
    body = {
        "model": "emu-model",
        "prompt": prompt,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "ignore_eos": True,
    }
    text, done, error = [], False, ""
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                continue
            msg = json.loads(data)
            if "error" in msg:
                error = error or msg["error"]["message"]
                continue
            text.append(msg["choices"][0]["text"])
    return "".join(text), done, error


def metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    )


def test_streams_of_a_dead_decode_node_resume_token_exact(deployment: Deployment) -> None:
    url = deployment.url
    arm_fault(deployment, "pd-d0", "die_in_decode", after_tokens=150)
    prompts = [f"[recover {i}] hello there" for i in range(6)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(lambda p: stream(url, p), prompts))
    assert deployment.procs["pd-d0"].wait(timeout=10) == 17  # it really died mid-decode
    for prompt, (text, done, error) in zip(prompts, results, strict=True):
        assert not error and done, (prompt, error)
        assert text == expected(prompt, MAX_TOKENS), prompt  # no repeated or missing token
    assert metric(url, "prfaas_decode_recoveries_total") >= 1


def test_with_no_decode_node_left_the_stream_fails_cleanly(deployment: Deployment) -> None:
    url = deployment.url
    for node in ("pd-d0", "pd-d1"):
        arm_fault(deployment, node, "die_in_decode", after_tokens=5)
    t0 = time.monotonic()
    text, done, error = stream(url, "[gone] hello there")
    assert time.monotonic() - t0 < 20
    assert not done and "decode" in error
    assert "127.0.0.1" not in error and "pd-d" not in error  # no internal address or node
    assert expected("[gone] hello there", MAX_TOKENS).startswith(text)
