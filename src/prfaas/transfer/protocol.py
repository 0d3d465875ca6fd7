"""Sans-IO connection state machines: mutual HMAC handshake, then per-connection frame sequencing.

Handshake (both ends prove they hold the cluster secret; nothing else is accepted before it):

    client -> HELLO(session_id, client_nonce, conn_index)
    server -> CHALLENGE(server_nonce,
                        HMAC(secret, "server" | session | client_nonce | server_nonce))
    client    verifies the server's MAC, then
    client -> AUTH(HMAC(secret, "client" | session | server_nonce | client_nonce))
    server -> AUTH_OK(checksum algorithms, max chunk)   or ERROR and close

After that, on each connection: BEGIN(xid) must precede LAYER(xid, i), which must precede
DATA(xid, i, ...) on the same connection (chunks are striped across connections, so every
connection announces what it carries). COMMIT may arrive before the last DATA on another
connection; the receiver completes the transfer once every chunk is verified. Resumption is by
chunk offset: unacknowledged chunks of a dropped connection are re-sent on any live connection
(after it re-announces BEGIN/LAYER), and the receiver acknowledges duplicates idempotently.
Illegal sequences raise `SequenceError`, handshake failures `AuthError` (both `ProtocolError`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable

from prfaas.transfer import frames as fr
from prfaas.transfer.errors import AuthError, ProtocolError, SequenceError

_SERVER_LABEL = b"prfaas-kv/1 server"
_CLIENT_LABEL = b"prfaas-kv/1 client"

AWAIT_HELLO = "await-hello"
AWAIT_CHALLENGE = "await-challenge"
AWAIT_AUTH = "await-auth"
AWAIT_AUTH_OK = "await-auth-ok"
READY = "ready"
CLOSED = "closed"

# Transfers whose state a receiving connection keeps by default: twice the server's default
# max_active_transfers (the server passes twice its own).
KEEP_TRANSFERS = 512
ERR_AUTH = 1
ERR_PROTOCOL = 2
ERR_LIMIT = 3


def _mac(secret: bytes, label: bytes, session: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(secret, label + session + first + second, hashlib.sha256).digest()


def _name(frame: fr.Frame) -> str:
    return type(frame).__name__.upper()


class ServerConnection:
    """Receiver side of one connection. `receive()` returns bytes to send back (or b"")."""

    def __init__(
        self,
        secret: bytes,
        *,
        checksum_mask: int,
        max_chunk_bytes: int = fr.MAX_CHUNK_BYTES,
        instance: int = 0,
        nonce_source: Callable[[int], bytes] = os.urandom,
        keep_transfers: int = KEEP_TRANSFERS,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        self._secret = secret
        self._keep = keep_transfers
        self._mask = checksum_mask
        self._instance = instance
        self._max_chunk = max_chunk_bytes
        self._nonce_source = nonce_source
        self.state = AWAIT_HELLO
        self.session_id = b""
        self.conn_index = -1
        self._client_nonce = b""
        self._server_nonce = b""
        # Per transfer (xid): its BEGIN and the layers announced on this connection. Insertion
        # order is xid order, so the oldest entries go first when the window is full.
        self._begun: dict[int, fr.Begin] = {}
        self._layers: dict[int, set[int]] = {}

    @property
    def authenticated(self) -> bool:
        return self.state == READY

    def receive(self, frame: fr.Frame) -> bytes:
        if self.state == AWAIT_HELLO:
            return self._on_hello(frame)
        if self.state == AWAIT_AUTH:
            return self._on_auth(frame)
        if self.state != READY:
            raise SequenceError(f"{_name(frame)} on a {self.state} connection")
        self._sequence(frame)
        return b""

    def _on_hello(self, frame: fr.Frame) -> bytes:
        if not isinstance(frame, fr.Hello):
            self.state = CLOSED
            raise AuthError(f"{_name(frame)} before the handshake: expected HELLO")
        self.session_id, self._client_nonce = frame.session_id, frame.nonce
        self.conn_index = frame.conn_index
        self._server_nonce = self._nonce_source(fr.NONCE_BYTES)
        mac = _mac(
            self._secret, _SERVER_LABEL, self.session_id, self._client_nonce, self._server_nonce
        )
        self.state = AWAIT_AUTH
        return fr.encode(fr.Challenge(self._server_nonce, mac))

    def _on_auth(self, frame: fr.Frame) -> bytes:
        self.state = CLOSED
        if not isinstance(frame, fr.Auth):
            raise AuthError(f"{_name(frame)} before authentication completed: expected AUTH")
        want = _mac(
            self._secret, _CLIENT_LABEL, self.session_id, self._server_nonce, self._client_nonce
        )
        if not hmac.compare_digest(want, frame.mac):
            raise AuthError("client failed to prove the cluster secret (HMAC mismatch)")
        self.state = READY
        return fr.encode(fr.AuthOk(self._mask, self._max_chunk, self._instance))

    def _sequence(self, frame: fr.Frame) -> None:
        if isinstance(frame, fr.Begin):
            seen = self._begun.get(frame.xid)
            if seen is not None and seen != frame:
                raise SequenceError(f"BEGIN for transfer {frame.xid} changed on this connection")
            if seen is None:
                self._begun[frame.xid] = frame
                self._layers[frame.xid] = set()
                self._trim()
        elif isinstance(frame, fr.Layer | fr.Commit):
            if frame.xid not in self._begun:
                raise SequenceError(f"{_name(frame)} for transfer {frame.xid} before its BEGIN")
            if isinstance(frame, fr.Layer):
                self._layers[frame.xid].add(frame.layer)
        elif isinstance(frame, fr.Data):
            if frame.layer not in self._layers.get(frame.xid, ()):
                raise SequenceError(
                    f"DATA for transfer {frame.xid} layer {frame.layer} before its LAYER"
                )
            if frame.length > self._max_chunk:
                raise SequenceError(f"DATA chunk of {frame.length} B exceeds {self._max_chunk}")
        elif isinstance(frame, fr.Abort):
            self.forget(frame.xid)
        elif isinstance(frame, fr.Error):
            self.state = CLOSED
            raise ProtocolError(f"peer error {frame.code}: {frame.message}")
        else:
            raise SequenceError(f"{_name(frame)} is not valid from a sender")

    def forget(self, xid: int) -> None:
        """Drop per-connection state of a finished transfer."""
        self._begun.pop(xid, None)
        self._layers.pop(xid, None)

    def _trim(self) -> None:
        """Keep the newest `keep_transfers` transfers' state. A sender commits a transfer on one
        of its connections, so the others never learn it ended: without a bound, every transfer
        a long-lived connection ever carried would stay here. A frame for a
        transfer this far behind is refused like one before its BEGIN."""
        while len(self._begun) > self._keep:
            self.forget(next(iter(self._begun)))


class ClientConnection:
    """Sender side of one connection: handshake, then which BEGIN/LAYER frames it still owes."""

    def __init__(
        self,
        secret: bytes,
        session_id: bytes,
        conn_index: int,
        *,
        nonce_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not secret:
            raise ValueError("the cluster secret must not be empty")
        if len(session_id) != fr.SESSION_BYTES:
            raise ValueError(f"session id must be {fr.SESSION_BYTES} bytes")
        self._secret = secret
        self.session_id = session_id
        self.conn_index = conn_index
        self._nonce = nonce_source(fr.NONCE_BYTES)
        self.state = AWAIT_HELLO
        self.checksum_mask = 0
        self.max_chunk_bytes = 0
        self.server_instance = 0
        self._begun: set[int] = set()
        self._layers: dict[int, set[int]] = {}  # xid -> layers whose LAYER frame was sent

    def hello(self) -> bytes:
        if self.state != AWAIT_HELLO:
            raise SequenceError("HELLO sent twice")
        self.state = AWAIT_CHALLENGE
        return fr.encode(fr.Hello(self.session_id, self._nonce, self.conn_index))

    def receive(self, frame: fr.Frame) -> bytes:
        """Handle a frame from the server; returns bytes to send (the AUTH reply) or b""."""
        if isinstance(frame, fr.Error):
            self.state = CLOSED
            err = AuthError if frame.code == ERR_AUTH else ProtocolError
            raise err(f"server error {frame.code}: {frame.message}")
        if self.state == AWAIT_CHALLENGE:
            return self._on_challenge(frame)
        if self.state == AWAIT_AUTH_OK:
            if not isinstance(frame, fr.AuthOk):
                self.state = CLOSED
                raise AuthError(f"{_name(frame)} while waiting for AUTH_OK")
            self.checksum_mask, self.max_chunk_bytes = frame.checksum_mask, frame.max_chunk_bytes
            self.server_instance = frame.instance
            self.state = READY
            return b""
        if self.state != READY:
            raise SequenceError(f"{_name(frame)} on a {self.state} connection")
        if not isinstance(frame, fr.Ack | fr.Nack | fr.Committed | fr.Abort):
            raise SequenceError(f"{_name(frame)} is not valid from a receiver")
        return b""

    def _on_challenge(self, frame: fr.Frame) -> bytes:
        self.state = CLOSED
        if not isinstance(frame, fr.Challenge):
            raise AuthError(f"{_name(frame)} while waiting for CHALLENGE")
        want = _mac(self._secret, _SERVER_LABEL, self.session_id, self._nonce, frame.nonce)
        if not hmac.compare_digest(want, frame.mac):
            raise AuthError("server failed to prove the cluster secret (HMAC mismatch)")
        self.state = AWAIT_AUTH_OK
        mac = _mac(self._secret, _CLIENT_LABEL, self.session_id, frame.nonce, self._nonce)
        return fr.encode(fr.Auth(mac))

    def preamble(self, begin: fr.Begin, layer: fr.Layer | None) -> bytes:
        """BEGIN/LAYER frames this connection must send before DATA of `layer` (or COMMIT)."""
        if self.state != READY:
            raise SequenceError(f"cannot send transfer frames on a {self.state} connection")
        out = b""
        if begin.xid not in self._begun:
            self._begun.add(begin.xid)
            out += fr.encode(begin)
        if layer is not None:
            sent = self._layers.setdefault(layer.xid, set())
            if layer.layer not in sent:
                sent.add(layer.layer)
                out += fr.encode(layer)
        return out

    def forget(self, xid: int) -> None:
        """Drop the state of a transfer that ended (committed or abandoned)."""
        self._begun.discard(xid)
        self._layers.pop(xid, None)
