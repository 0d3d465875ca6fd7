"""Handshake and sequencing state machines, and per-transfer chunk bookkeeping (sans-IO)."""

from __future__ import annotations

import pytest

from prfaas.transfer import checksum
from prfaas.transfer import frames as fr
from prfaas.transfer.errors import AuthError, ChecksumError, SequenceError
from prfaas.transfer.protocol import READY, ClientConnection, ServerConnection
from prfaas.transfer.tracker import BUSY, DUPLICATE, NEW, ReceiveTracker, SendTracker

SESSION = bytes(range(16))


def _decode(wire: bytes) -> list[fr.Frame]:
    return [e for e in fr.FrameDecoder().feed(wire) if not isinstance(e, fr.PayloadPart)]


def _handshake(
    client_secret: bytes, server_secret: bytes, keep_transfers: int = 512
) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(client_secret, SESSION, 0)
    server = ServerConnection(
        server_secret, checksum_mask=checksum.supported(), keep_transfers=keep_transfers
    )
    challenge = server.receive(_decode(client.hello())[0])
    auth = client.receive(_decode(challenge)[0])
    ok = server.receive(_decode(auth)[0])
    client.receive(_decode(ok)[0])
    return client, server


def test_mutual_handshake_succeeds_with_the_same_secret() -> None:
    client, server = _handshake(b"cluster-secret", b"cluster-secret")
    assert client.state == READY and server.state == READY
    assert client.checksum_mask == checksum.supported()
    assert server.session_id == SESSION


def test_client_rejects_a_server_that_does_not_know_the_secret() -> None:
    client = ClientConnection(b"right", SESSION, 0)
    server = ServerConnection(b"wrong", checksum_mask=checksum.supported())
    challenge = server.receive(_decode(client.hello())[0])
    with pytest.raises(AuthError, match="server failed to prove"):
        client.receive(_decode(challenge)[0])


def test_server_rejects_a_client_mac_that_does_not_verify() -> None:
    server = ServerConnection(b"right", checksum_mask=checksum.supported())
    server.receive(fr.Hello(SESSION, bytes(32), 0))
    with pytest.raises(AuthError, match="client failed to prove"):
        server.receive(fr.Auth(bytes(32)))
    assert not server.authenticated


@pytest.mark.parametrize(
    "first",
    [
        fr.Data(1, 0, 0, 10, 0),
        fr.Begin(1, 1, 10, 4096, 1, "x"),
        fr.Auth(bytes(32)),
        fr.Commit(1, 1, 10),
    ],
)
def test_nothing_but_hello_is_accepted_before_authentication(first: fr.Frame) -> None:
    server = ServerConnection(b"s", checksum_mask=1)
    with pytest.raises(AuthError, match="before the handshake"):
        server.receive(first)


def test_payload_frames_after_hello_but_before_auth_are_rejected() -> None:
    server = ServerConnection(b"s", checksum_mask=1)
    server.receive(fr.Hello(SESSION, bytes(32), 0))
    with pytest.raises(AuthError, match="before authentication completed"):
        server.receive(fr.Data(1, 0, 0, 10, 0))


def test_sequencing_rules_on_an_authenticated_connection() -> None:
    _, server = _handshake(b"k", b"k")
    with pytest.raises(SequenceError, match="before its BEGIN"):
        server.receive(fr.Layer(5, 0, 100))
    server.receive(fr.Begin(5, 2, 200, 4096, 1, "req"))
    with pytest.raises(SequenceError, match="before its LAYER"):
        server.receive(fr.Data(5, 0, 0, 100, 0))
    server.receive(fr.Layer(5, 0, 100))
    server.receive(fr.Data(5, 0, 0, 100, 0))
    with pytest.raises(SequenceError, match="changed"):
        server.receive(fr.Begin(5, 3, 200, 4096, 1, "req"))
    with pytest.raises(SequenceError, match="not valid from a sender"):
        server.receive(fr.Ack(5, 0, 0, 100))


def test_client_preamble_announces_each_transfer_and_layer_once_per_connection() -> None:
    client, _ = _handshake(b"k", b"k")
    begin, layer = fr.Begin(1, 0, 0, 4096, 1, "t"), fr.Layer(1, 0, 10)
    assert _decode(client.preamble(begin, layer)) == [begin, layer]
    assert client.preamble(begin, layer) == b""
    client.forget(1)
    assert _decode(client.preamble(begin, None)) == [begin]


def test_a_receiving_connection_keeps_only_the_newest_transfers() -> None:
    # A sender commits on one connection; the others never hear the transfer ended. Their state
    # must stay bounded (the soak's slow growth), and a frame for an evicted transfer is refused.
    _, server = _handshake(b"k", b"k", keep_transfers=4)
    for xid in range(1, 101):
        server.receive(fr.Begin(xid, 1, 100, 4096, 1, f"r{xid}"))
        server.receive(fr.Layer(xid, 0, 100))
        server.receive(fr.Data(xid, 0, 0, 100, 0))
    assert sorted(server._begun) == [97, 98, 99, 100]
    assert sorted(server._layers) == [97, 98, 99, 100]
    with pytest.raises(SequenceError, match="before its BEGIN"):
        server.receive(fr.Layer(3, 0, 100))
    with pytest.raises(SequenceError, match="before its LAYER"):
        server.receive(fr.Data(3, 0, 0, 100, 0))
    server.receive(fr.Abort(100, "gone"))  # an abort still forgets at once
    assert 100 not in server._begun and 100 not in server._layers


def test_a_sending_connection_forgets_a_transfer_entirely() -> None:
    client, _ = _handshake(b"k", b"k")
    for xid in range(1, 50):
        client.preamble(fr.Begin(xid, 0, 0, 4096, 1, "t"), fr.Layer(xid, 0, 10))
        client.forget(xid)
    assert not client._begun and not client._layers


def _tracker(total: int = 0, layers: int = 0, limit: int = 1 << 20) -> ReceiveTracker:
    return ReceiveTracker(fr.Begin(1, layers, total, 4096, 1, "t"), max_transfer_bytes=limit)


def test_receive_tracker_completes_only_when_every_chunk_is_verified_and_committed() -> None:
    t = _tracker()
    assert t.declare_layer(fr.Layer(1, 0, 10000)) is True
    assert t.declare_layer(fr.Layer(1, 0, 10000)) is False
    offsets = [(0, 4096), (4096, 4096), (8192, 1808)]
    for off, n in offsets:
        assert t.plan_chunk(fr.Data(1, 0, off, n, 0)) == NEW
    # The same chunk arriving on a second connection while the first still writes it.
    assert t.plan_chunk(fr.Data(1, 0, 0, 4096, 0)) == BUSY
    t.on_commit(fr.Commit(1, 1, 10000))
    for off, n in offsets[:2]:
        t.chunk_verified(0, off, n)
        t.chunk_done(0, off)
    assert not t.complete
    t.chunk_done(0, 8192)  # e.g. it failed verification: it may land again
    assert t.plan_chunk(fr.Data(1, 0, 8192, 1808, 0)) == NEW
    t.chunk_verified(0, 8192, 1808)
    assert t.complete
    assert t.plan_chunk(fr.Data(1, 0, 0, 4096, 0)) == DUPLICATE


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (fr.Data(1, 0, 100, 4096, 0), "not a chunk"),
        (fr.Data(1, 0, 0, 4000, 0), "length"),
        (fr.Data(1, 0, 12288, 4096, 0), "not a chunk"),
        (fr.Data(1, 1, 0, 4096, 0), "undeclared layer"),
    ],
)
def test_receive_tracker_rejects_chunks_that_do_not_fit(data: fr.Data, match: str) -> None:
    t = _tracker()
    t.declare_layer(fr.Layer(1, 0, 10000))
    with pytest.raises(SequenceError, match=match):
        t.plan_chunk(data)


def test_receive_tracker_enforces_size_limits_before_allocation() -> None:
    with pytest.raises(SequenceError, match="limit"):
        _tracker(total=2 << 20)
    t = _tracker(limit=8192)
    with pytest.raises(SequenceError, match="past"):
        t.declare_layer(fr.Layer(1, 0, 8193))
    t = _tracker(layers=2)
    with pytest.raises(SequenceError, match="beyond"):
        t.declare_layer(fr.Layer(1, 2, 10))
    t.declare_layer(fr.Layer(1, 0, 10))
    with pytest.raises(SequenceError, match="contradicts"):
        t.on_commit(fr.Commit(1, 3, 10))


def test_send_tracker_chunks_acks_and_gives_up_after_repeated_corruption() -> None:
    st = SendTracker(fr.Begin(9, 0, 0, 4096, 1, "t"), max_attempts=2)
    data = memoryview(bytes(10000))
    chunks = st.add_layer(0, data)
    assert [(c.offset, len(c.view)) for c in chunks] == [(0, 4096), (4096, 4096), (8192, 1808)]
    assert all(c.view.obj is data.obj for c in chunks)  # views, not copies
    commit = st.finish()
    assert commit == fr.Commit(9, 1, 10000)
    for c in chunks[:2]:
        assert st.ack(fr.Ack(9, 0, c.offset, len(c.view))) is c
    assert st.ack(fr.Ack(9, 0, 0, 4096)) is None  # duplicate ACK
    last = chunks[2]
    last.attempts = 1
    assert st.nack(fr.Nack(9, 0, 8192, 1808, fr.NACK_CHECKSUM)) is last
    last.attempts = 2
    with pytest.raises(ChecksumError, match="failed checksum verification 2 times"):
        st.nack(fr.Nack(9, 0, 8192, 1808, fr.NACK_CHECKSUM))
    last.attempts = 1
    assert st.nack(fr.Nack(9, 0, 8192, 1808, fr.NACK_BUSY)) is last
    assert last.attempts == 0  # "busy" is not a failed delivery
    with pytest.raises(SequenceError, match="unknown chunk"):
        st.ack(fr.Ack(9, 0, 100, 4096))
    assert not st.all_acked
    st.ack(fr.Ack(9, 0, 8192, 1808))
    assert st.all_acked


def test_checksums_agree_between_one_shot_and_incremental() -> None:
    data = bytes(range(256)) * 5000
    for alg in (checksum.CRC32, checksum.XXH3_64):
        if not checksum.supported() & (1 << alg):
            continue
        h = checksum.new_hasher(alg)
        for i in range(0, len(data), 7777):
            h.update(memoryview(data)[i : i + 7777])
        assert h.intdigest() == checksum.one_shot(alg)(data)
    assert checksum.best_common(1 << checksum.CRC32) == checksum.CRC32
    with pytest.raises(ValueError, match="not supported"):
        checksum.pick(1 << checksum.CRC32, "xxh3-64")
