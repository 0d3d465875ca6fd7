"""Typed errors of the KV transfer engine: protocol violations, auth, integrity, links."""

from __future__ import annotations

from prfaas.errors import PrfaasError


class TransferError(PrfaasError):
    """A KV transfer failed; the message names the peer, transfer and reason."""


class ProtocolError(TransferError):
    """The peer broke the wire protocol; the connection carrying it is closed."""


class FrameError(ProtocolError):
    """Bytes that do not decode to a valid frame (bad magic, version, type, length or field)."""


class SequenceError(ProtocolError):
    """A well-formed frame arrived in a state where it is not allowed."""


class AuthError(ProtocolError):
    """The cluster-secret handshake failed (wrong secret, or a frame sent before it succeeded)."""


class ChecksumError(TransferError):
    """A chunk kept failing payload verification after the allowed retransmissions."""


class TransferAborted(TransferError):
    """The transfer was aborted by the peer, the producer, or cancellation."""


class LinkError(TransferError):
    """Every connection to the peer failed and reconnecting did not succeed in time."""
