"""Attacks on a live deployment's KV transfer ports: replayed handshakes, rogue TLS clients."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from conftest import Honest, as_identity, complete
from live_support import LONG_PROMPT
from prfaas.deploy.supervisor import Deployment
from prfaas.security.tls import Pki
from prfaas.transfer import frames as fr
from prfaas.transfer.protocol import ERR_AUTH, READY, ClientConnection

pytestmark = pytest.mark.slow


def _frame(sock: socket.socket) -> fr.Frame:
    dec = fr.FrameDecoder()
    while True:
        data = sock.recv(dec.want())
        assert data, "the receiver closed the connection"
        events = dec.feed(data)
        if events:
            frame = events[0]
            assert not isinstance(frame, fr.PayloadPart)
            return frame


def _handshake(port: int, secret: bytes, replay: list[bytes] | None = None) -> list[bytes]:
    """Run the HMAC handshake (or replay recorded client frames); returns what the client sent."""
    session = b"s" * fr.SESSION_BYTES
    proto = ClientConnection(secret, session, 0)
    sent: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        hello = replay[0] if replay else proto.hello()
        sock.sendall(hello)
        sent.append(hello)
        challenge = _frame(sock)
        if replay:
            sock.sendall(replay[1])
            reply = _frame(sock)
            assert isinstance(reply, fr.Error) and reply.code == ERR_AUTH, reply
            return sent
        auth = proto.receive(challenge)
        sock.sendall(auth)
        sent.append(auth)
        proto.receive(_frame(sock))
        assert proto.state == READY
    return sent


def test_a_replayed_kv_handshake_is_rejected(dep: Deployment, honest: Honest) -> None:
    secret = (dep.run_dir / "secret").read_bytes().strip()
    port = dep.transfer_ports["pd-d0"]
    recorded = _handshake(port, secret)  # what an eavesdropper on the link could record
    for _ in range(5):  # the receiver's fresh nonce makes the recorded AUTH worthless
        _handshake(port, b"not the secret", replay=recorded)


@pytest.mark.parametrize("node", ["prfaas-0", "pd-p0", "pd-d0"])
def test_tls_to_a_transfer_port_needs_a_cluster_certificate(
    dep: Deployment, rogue_pki: Path, node: str, honest: Honest
) -> None:
    port = dep.transfer_ports[node]
    assert dep.pki_dir is not None
    no_cert = ssl.create_default_context(cafile=dep.pki_dir / "ca.pem")
    for ctx, name in ((Pki(rogue_pki, "pd-p0").client, node), (no_cert, node)):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with raw, pytest.raises((ssl.SSLError, ConnectionError, TimeoutError)):
            _hello_over_tls(ctx.wrap_socket(raw, server_hostname=name))


def _hello_over_tls(tls: ssl.SSLSocket) -> None:
    with tls:
        tls.sendall(fr.encode(fr.Hello(b"s" * fr.SESSION_BYTES, b"n" * 32, 0)))
        if not tls.recv(1):  # TLS 1.3: a rejected client certificate shows on the first read
            raise ConnectionError("closed")


def test_flipped_bits_on_the_link_are_detected_and_resent(dep: Deployment, honest: Honest) -> None:
    """The WAN emulator flips one bit of ciphertext crossing prfaas -> pd; the receiver's TLS
    rejects the record and drops the connection, the sender re-connects and re-sends what was
    not acknowledged, and the request completes."""
    before = as_identity(dep, "operator", "wan", "GET", "/health").json()["faults"]
    armed = as_identity(dep, "operator", "wan", "POST", "/fault",
                        json={"kind": "flip_bit", "count": 1})
    assert armed.status_code == 200, armed.text
    for i in range(20):  # until a transfer carried the flip (honest traffic may take it first)
        resp = complete(dep.url, f"[flip {i}] " + LONG_PROMPT * 3, max_tokens=4)
        assert resp.status_code == 200, resp.text
        after = as_identity(dep, "operator", "wan", "GET", "/health").json()["faults"]
        if after["flipped"] > before["flipped"]:
            break
    assert after["flipped"] == before["flipped"] + 1
    # the damaged connection was replaced: the relay saw a new one after the flip
    resp = complete(dep.url, "[flip after] " + LONG_PROMPT * 3, max_tokens=4)
    assert resp.status_code == 200, resp.text
    final = as_identity(dep, "operator", "wan", "GET", "/health").json()["faults"]
    assert final["connections"] > before["connections"]
    assert as_identity(dep, "pd-p0", "wan", "POST", "/fault",
                       json={"kind": "flip_bit"}).status_code == 403
