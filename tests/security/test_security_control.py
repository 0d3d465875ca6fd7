"""Attacks on the control network of a live deployment: each is rejected, honest traffic is not
disturbed (the `honest` fixture fails the test if any concurrent request does not succeed)."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Honest, as_identity
from prfaas.deploy.supervisor import Deployment
from prfaas.security.tls import Pki

pytestmark = pytest.mark.slow
NODES = ("prfaas-0", "pd-p0", "pd-d0")
TARGETS = ("router", "wan", *NODES)


def _base(dep: Deployment, target: str) -> str:
    return {"router": dep.control_url, "wan": dep.wan_url}.get(target) or dep.node_urls[target]


@pytest.mark.parametrize("target", TARGETS)
def test_control_listeners_refuse_clients_without_a_cluster_certificate(
    dep: Deployment, rogue_pki: Path, target: str, honest: Honest
) -> None:
    base = _base(dep, target)
    assert dep.pki_dir is not None
    no_cert = ssl.create_default_context(cafile=dep.pki_dir / "ca.pem")
    no_cert.check_hostname = False
    for verify in (no_cert, Pki(rogue_pki, "operator").client):
        with httpx.Client(verify=verify, timeout=5) as client, pytest.raises(httpx.TransportError):
            client.get(base + "/health", extensions={"sni_hostname": target})
    with pytest.raises(httpx.TransportError):  # plain HTTP on a TLS port: no HTTP answer at all
        httpx.get(base.replace("https://", "http://") + "/health", timeout=5)


@pytest.mark.parametrize("target", TARGETS)
def test_a_listener_that_cannot_prove_its_name_is_refused(dep: Deployment, target: str) -> None:
    """The operator expects `router` but dials a worker's port: the certificate name differs."""
    wrong = "pd-p0" if target != "pd-p0" else "router"
    assert dep.pki_dir is not None
    operator = Pki(dep.pki_dir, "operator").client
    with httpx.Client(verify=operator, timeout=5) as client, pytest.raises(httpx.ConnectError):
        client.get(_base(dep, target) + "/health", extensions={"sni_hostname": wrong})


def test_etcd_refuses_clients_without_a_cluster_certificate(
    dep: Deployment, rogue_pki: Path, honest: Honest
) -> None:
    """Membership lives in etcd: a client with a certificate of another CA, or without TLS at
    all, can neither read nor write it."""
    import asyncio

    import aetcd

    from prfaas.cluster.client import TlsClient
    from prfaas.cluster.keys import node_key

    url = dep.etcd_url
    assert url.startswith("https://")
    host, port = url.removeprefix("https://").rsplit(":", 1)

    async def forge(client: Any) -> None:
        async with asyncio.timeout(10):
            await client.connect()
            await client.put(node_key(dep.cfg.name, "prfaas-0"), b"{}")

    rogue = TlsClient(host, int(port), Pki(rogue_pki, "prfaas-0"), 3)
    plain = aetcd.Client(host=host, port=int(port), timeout=3)
    for client in (rogue, plain):
        with pytest.raises(Exception):  # noqa: B017 - refused in the handshake, however it shows
            asyncio.run(forge(client))
    assert dep.control("GET", "/internal/state").json()["nodes"]["prfaas-0"]["alive"]


def test_event_streams_admit_only_registered_routers(dep: Deployment, honest: Honest) -> None:
    """A node's ZMQ stream speaks CURVE: a subscriber without the server key, or with a key no
    router registered in etcd, receives nothing; the routers' streams keep flowing."""
    import asyncio

    import zmq
    import zmq.asyncio

    from prfaas.cluster.client import connect
    from prfaas.cluster.keys import decode_node, node_key

    async def endpoint() -> tuple[str, str]:
        client = await connect(dep.etcd_url, Pki(dep.pki_dir, "operator"))  # type: ignore[arg-type]
        got = await client.get(node_key(dep.cfg.name, "prfaas-0"))
        meta = decode_node(got.value)
        return meta.events, meta.curve_key

    async def received(curve: tuple[bytes, bytes, bytes] | None, events: str) -> int:
        ctx = zmq.asyncio.Context()
        sub = ctx.socket(zmq.SUB)
        if curve is not None:
            sub.curve_serverkey, sub.curve_publickey, sub.curve_secretkey = curve
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(events)
        n = 0
        try:
            async with asyncio.timeout(1.5):
                while True:
                    await sub.recv_multipart()
                    n += 1
        except TimeoutError:
            pass
        ctx.destroy(linger=0)
        return n

    events, server_key = asyncio.run(endpoint())
    assert server_key and events.startswith("tcp://")
    public, secret = zmq.curve_keypair()
    assert asyncio.run(received(None, events)) == 0  # plain ZMQ: no handshake
    assert asyncio.run(received((server_key.encode(), public, secret), events)) == 0  # unknown key


@pytest.mark.parametrize(
    ("path", "body"),
    [("/internal/policy", {"name": "prfaas", "params": {"threshold_tokens": 1}}),
     ("/internal/role", {"node": "pd-d0", "role": "prefill"})],
)
def test_policy_and_role_changes_need_the_operator(
    dep: Deployment, path: str, body: dict[str, Any], honest: Honest
) -> None:
    for who in ("pd-p0", "prfaas-0", "wan"):
        resp = as_identity(dep, who, "router", "POST", path, json=body)
        assert resp.status_code == 403, resp.text
    state = dep.control("GET", "/internal/state").json()
    assert state["threshold_tokens"] == 64 and state["nodes"]["pd-d0"]["role"] == "decode"


@pytest.mark.parametrize(
    "body",
    [{"name": "prfaas", "params": {"threshold_by_gbps": [[1, "x"]]}},
     {"name": "prfaas", "params": {"threshold_tokens": "many"}},
     {"name": "prfaas", "params": {"no_such_knob": 1}},
     {"name": "prfaas", "params": {"scarce_util": 5.0}},
     {"name": "nope"},
     {"params": {}},
     "not an object"],
)
def test_a_poisoned_policy_is_a_400_and_changes_nothing(
    dep: Deployment, body: object, honest: Honest
) -> None:
    resp = dep.control("POST", "/internal/policy", json=body)
    assert resp.status_code == 400, resp.text
    resp = dep.control("POST", "/internal/policy", content=b"{not json")
    assert resp.status_code == 400, resp.text
    state = dep.control("GET", "/internal/state").json()
    assert state["policy"] == "prfaas" and state["threshold_tokens"] == 64


class Listener:
    """An attacker's TCP listener that records every connection and the bytes it receives."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(2)
            data = b""
            try:
                while chunk := conn.recv(65536):
                    data += chunk
            except OSError:
                pass
            self.received.append(data)
            conn.close()


def _job(attacker: Listener, node: str = "pd-d0") -> dict[str, Any]:
    target = {"node": node, "host": "127.0.0.1", "port": attacker.port}
    return {"request_id": "evil", "attempt": 0, "token_ids": list(range(1, 200)),
            "sampling": {"max_tokens": 4}, "target": target,
            "pull": {"src_node": "attacker", "src_url": f"http://127.0.0.1:{attacker.port}",
                     "blocks": 4, "target": target}}


def test_a_forged_prefill_job_reaches_nobody(dep: Deployment, honest: Honest) -> None:
    attacker = Listener()
    for who in ("pd-p0", "pd-d0", "operator", "wan"):  # only the router gives jobs
        resp = as_identity(dep, who, "prfaas-0", "POST", "/prefill", json=_job(attacker))
        assert resp.status_code == 403, resp.text
    # Even a job the router itself signed cannot send the KV, or a pull, to an address of its
    # choosing: peers are found by name, targets must be where the named node lives.
    job = _job(attacker)
    job["target"] = {**job["target"], "host": "10.66.66.66"}
    resp = as_identity(dep, "router", "prfaas-0", "POST", "/prefill", json=job)
    assert resp.status_code == 409 and "not where that node lives" in resp.text
    attacker.sock.close()
    assert not [data for data in attacker.received if data and data[0] != 0x16]  # no plaintext


def test_cross_cluster_kv_to_an_impostor_gets_only_a_tls_hello(
    dep: Deployment, honest: Honest
) -> None:
    """A (router-signed) job pointing the KV at another port on the node's host: the sender
    insists on TLS with the decode node's name, so the impostor learns nothing."""
    attacker = Listener()
    resp = as_identity(dep, "router", "prfaas-0", "POST", "/prefill",
                       json={**_job(attacker), "pull": None})
    assert resp.status_code >= 400
    attacker.sock.close()
    assert attacker.received and all(d[:1] in (b"", b"\x16") for d in attacker.received)
    assert not any(b"evil" in d for d in attacker.received)


@pytest.mark.parametrize("path", ["/prefill", "/decode", "/fault"])
@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"request_id": 5}', b"\xff" * 64])
def test_malformed_worker_rpc_is_a_400_never_a_500(
    dep: Deployment, path: str, body: bytes
) -> None:
    resp = as_identity(dep, "router", "pd-p0", "POST", path, content=body)
    assert resp.status_code == 400, resp.text


def test_the_relay_api_is_no_open_proxy(dep: Deployment, honest: Honest) -> None:
    before = as_identity(dep, "operator", "wan", "GET", "/health").json()["relays"]
    attack = {"src": "prfaas", "dst": "pd", "host": "127.0.0.1", "port": 22}  # the old API
    for who in ("pd-p0", "prfaas-0"):
        assert as_identity(dep, who, "wan", "POST", "/relay", json=attack).status_code == 403
    for body in (attack, {"src": "prfaas", "node": "evil.example", "port": 22},
                 {"src": "mars", "node": "pd-d0", "port": 22}, {"src": "prfaas", "node": "pd-d0"}):
        for _ in range(50):
            resp = as_identity(dep, "router", "wan", "POST", "/relay", json=body)
            assert resp.status_code == 400, resp.text
    after = as_identity(dep, "operator", "wan", "GET", "/health").json()["relays"]
    assert after == before


def test_a_node_certificate_writes_only_its_own_etcd_record(
    dep: Deployment, honest: Honest
) -> None:
    """etcd runs with per-identity permissions: a (stolen) node certificate can keep its own
    record alive but cannot rewrite another node's, assign roles, or change the policy."""
    import asyncio

    from prfaas.cluster.client import connect
    from prfaas.cluster.keys import node_key, policy_key, role_key

    name = dep.cfg.name
    before = dep.control("GET", "/internal/state").json()

    async def attempts() -> list[str]:
        client = await connect(dep.etcd_url, Pki(dep.pki_dir, "pd-p0"))  # type: ignore[arg-type]
        refused = []
        for key in (node_key(name, "prfaas-0"), role_key(name, "pd-d0"), policy_key(name),
                    b"/prfaas/" + name.encode() + b"/leader/rebalancer"):
            try:
                await client.put(key, b'{"name": "evil"}')
            except Exception as exc:
                refused.append(f"{key!r}: {type(exc).__name__}")
        assert (await client.get(node_key(name, "pd-p0"))) is not None  # reads are allowed
        return refused

    assert len(asyncio.run(attempts())) == 4
    after = dep.control("GET", "/internal/state").json()
    assert after["policy"] == before["policy"] and after["nodes"]["pd-d0"]["role"] == "decode"
    assert after["nodes"]["prfaas-0"]["url"] == before["nodes"]["prfaas-0"]["url"]
