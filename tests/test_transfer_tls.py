"""KV transfers over TLS (stdlib ssl): identities checked, tampering detected and resent."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from prfaas.security.certs import init_ca, issue
from prfaas.security.tls import Pki
from prfaas.transfer.errors import LinkError, TransferError
from prfaas.transfer.shaping import ShapingRelay, Tamper
from prfaas.transfer.tcp import LayerPayload, ReceivedTransfer, TransferClient, TransferServer

SECRET = b"tls-secret"
LAYERS = [random.Random(i).randbytes(300_000) for i in range(4)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    init_ca(folder)
    for name in ("sender", "receiver"):
        issue(folder, name)
    other = folder / "other"  # an attacker's own CA, with a certificate named like the receiver
    init_ca(other)
    issue(other, "receiver")
    return folder


def _no_tamper(_conn: int, _offset: int, data: bytes) -> bytes:
    return data


async def _send(
    pki: Path,
    tamper: Tamper = _no_tamper,
    *,
    server_pki: Path | None = None,
    expect: str = "receiver",
    client_tls: bool = True,
    allow_plain: bool = False,
    **kw: Any,
) -> tuple[Any, ReceivedTransfer, int]:
    got: asyncio.Future[ReceivedTransfer] = asyncio.get_running_loop().create_future()
    srv_ctx = Pki(server_pki or pki, "receiver").server
    cli_ctx = Pki(pki, "sender").client if client_tls else None
    async with (
        TransferServer("127.0.0.1", 0, SECRET, got.set_result, tls=srv_ctx,
                       allow_plain=allow_plain, handshake_timeout_s=2.0) as srv,
        ShapingRelay("127.0.0.1", 0, "127.0.0.1", srv.port, tamper=tamper) as relay,
    ):
        opts = {"connections": 2, "chunk_bytes": 64 << 10, "connect_timeout_s": 3.0, **kw}
        async with TransferClient("127.0.0.1", relay.port, SECRET, tls=cli_ctx,
                                  server_name=expect, **opts) as client:
            result = await client.send("tls", [LayerPayload(i, d) for i, d in enumerate(LAYERS)])
            reconnects = client.reconnects
        return result, await asyncio.wait_for(got, 10), reconnects


def test_transfer_over_tls_arrives_intact(pki: Path) -> None:
    result, received, _ = asyncio.run(_send(pki))
    assert result.verified
    assert [bytes(v) for v in received.layers] == LAYERS


def test_a_flipped_bit_on_the_wire_is_detected_and_the_chunk_resent(pki: Path) -> None:
    """TLS records are authenticated: the damaged record kills the connection; the sender
    re-opens it and re-sends every chunk that was not acknowledged."""
    state = {"flipped": 0}

    def flip(conn: int, offset: int, data: bytes) -> bytes:
        if conn == 0 and offset > 200_000 and not state["flipped"] and len(data) > 100:
            state["flipped"] = 1
            out = bytearray(data)
            out[len(out) // 2] ^= 0x10
            return bytes(out)
        return data

    result, received, reconnects = asyncio.run(_send(pki, flip, connections=1))
    assert state["flipped"] == 1
    assert reconnects >= 1 and result.retransmitted_chunks >= 1
    assert [bytes(v) for v in received.layers] == LAYERS


def test_a_receiver_with_the_wrong_name_is_refused(pki: Path) -> None:
    with pytest.raises((TransferError, OSError)):
        asyncio.run(_send(pki, expect="someone-else"))


def test_a_receiver_from_another_ca_is_refused(pki: Path) -> None:
    with pytest.raises((TransferError, OSError)):
        asyncio.run(_send(pki, server_pki=pki / "other"))


def test_a_plain_sender_is_refused_where_tls_is_required(pki: Path) -> None:
    with pytest.raises((TransferError, LinkError, OSError)):
        asyncio.run(_send(pki, client_tls=False, max_reconnects=0))


def test_plain_senders_still_work_where_allowed(pki: Path) -> None:
    result, received, _ = asyncio.run(_send(pki, client_tls=False, allow_plain=True))
    assert result.verified and [bytes(v) for v in received.layers] == LAYERS
