"""The public listener of a live deployment: nothing internal, API keys, bounded requests."""

from __future__ import annotations

import json
import re
import socket
import time

import httpx
import openai
import pytest

from conftest import KEY, MAX_BODY, MAX_CONCURRENT, MAX_TOKENS, OTHER_KEY, Honest, complete
from prfaas.deploy.supervisor import Deployment
from prfaas.security.asgi import HEADER_TIMEOUT_S
from prfaas.server.generation import scrub

pytestmark = pytest.mark.slow
INTERNAL = ["/internal/state", "/internal/decisions", "/internal/health", "/internal/heartbeat",
            "/internal/policy", "/internal/role", "/prefill", "/decode", "/push", "/role",
            "/fault", "/relay"]


@pytest.mark.parametrize("path", INTERNAL)
def test_nothing_internal_is_reachable_on_the_public_port(
    dep: Deployment, path: str, honest: Honest
) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    assert httpx.get(dep.url + path, headers=headers).status_code in (404, 405)
    resp = httpx.post(dep.url + path, json={"name": "prfaas", "params": {"threshold_tokens": 1}},
                      headers=headers)
    assert resp.status_code in (404, 405)


def test_public_pages_name_no_internal_address(dep: Deployment) -> None:
    assert complete(dep.url, "[leak] hello").status_code == 200
    health = httpx.get(dep.url + "/health").json()
    # Counts per cluster only: no node names (let alone addresses) on the public port.
    assert set(health) == {"ok", "status", "registered", "expected", "clusters"}
    assert not any(node.name in httpx.get(dep.url + "/health").text for node in dep.cfg.nodes)
    for page in ("/health", "/dashboard/state", "/metrics", "/openapi.json"):
        text = httpx.get(dep.url + page).text
        assert "127.0.0.1" not in text and "https://" not in text, page
        for port in [*(u.rsplit(":", 1)[1] for u in dep.node_urls.values()),
                     *map(str, dep.transfer_ports.values())]:
            # a whole port after a colon: "maximum":4294967295 in the OpenAPI schema is no leak of
            # port 42949 (a random port made that false alarm once)
            assert re.search(rf":{port}(?!\d)", text) is None, (page, port)


def test_scrubbed_errors_keep_the_message_but_not_the_address() -> None:
    msg = scrub("prefill failed: pd-p0: RpcError: 127.0.0.1:45527/prefill: ConnectionResetError")
    assert "127.0.0.1" not in msg and "45527" not in msg and "ConnectionResetError" in msg
    assert "10.0.0.7" not in scrub("cannot connect to https://10.0.0.7:8443/push")


def test_the_openai_client_needs_the_right_key(dep: Deployment) -> None:
    with openai.OpenAI(base_url=f"{dep.url}/v1", api_key=KEY, max_retries=0) as client:
        done = client.completions.create(model="emu-model", prompt="[oa] hi", max_tokens=6)
        assert len(done.choices[0].text) == 6
        stream = client.chat.completions.create(
            model="emu-model", messages=[{"role": "user", "content": "[oa] hello"}],
            max_tokens=6, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert len(text) == 6
    for key in ("sk-wrong-key-0123456789", KEY[:-1]):
        wrong = openai.OpenAI(base_url=f"{dep.url}/v1", api_key=key, max_retries=0)
        with wrong, pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="emu-model", prompt="hi", max_tokens=2)
    resp = complete(dep.url, "hi", key=None)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{dep.url}/v1/models").status_code == 401


def test_request_size_and_token_caps(dep: Deployment, honest: Honest) -> None:
    big = complete(dep.url, "x" * (MAX_BODY + 10))
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    over = complete(dep.url, "hi", max_tokens=MAX_TOKENS + 1)
    assert over.status_code == 400 and over.json()["error"]["param"] == "max_tokens"
    long = complete(dep.url, "word " * 5000)
    assert long.status_code == 400 and long.json()["error"]["code"] == "context_length_exceeded"
    # a body that lies about its length is cut off at the cap too
    chunks = (b"x" * 8192 for _ in range(MAX_BODY // 8192 + 2))
    resp = httpx.post(f"{dep.url}/v1/completions", content=chunks,
                      headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 413


def test_concurrent_requests_per_key_are_capped(dep: Deployment, honest: Honest) -> None:
    """MAX_CONCURRENT requests of one key that are still uploading hold every slot of that key;
    the next one is a 429, other keys are unaffected, and the slots free up afterwards."""
    port = int(dep.url.rsplit(":", 1)[1])
    head = (f"POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {OTHER_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{").encode()
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONCURRENT)]
    for sock in slow:
        sock.sendall(head)
    time.sleep(0.5)
    try:
        resp = complete(dep.url, "[cap] hi", key=OTHER_KEY)
        assert resp.status_code == 429, resp.text
        assert resp.json()["error"]["code"] == "rate_limit_exceeded"
        assert complete(dep.url, "[cap] other key", key=KEY).status_code == 200
    finally:
        for sock in slow:
            sock.close()
    deadline = time.monotonic() + 5
    while complete(dep.url, "[cap] again", key=OTHER_KEY).status_code == 429:
        assert time.monotonic() < deadline, "slots never freed"
        time.sleep(0.1)


def test_idle_and_slow_connections_are_closed(dep: Deployment, honest: Honest) -> None:
    port = int(dep.url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(100)]
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # ... and never the rest
    time.sleep(HEADER_TIMEOUT_S + 2)
    for sock in [*idle, slow]:
        sock.settimeout(2)
        assert sock.recv(1024) == b"", "the server kept an idle connection open"
        sock.close()


def test_errors_are_openai_shaped(dep: Deployment) -> None:
    resp = complete(dep.url, "hi", model="gpt-nope")
    err = resp.json()["error"]
    assert resp.status_code == 404 and {"message", "type", "param", "code"} <= set(err)
    json.dumps(err)
