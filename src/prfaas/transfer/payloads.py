"""Values exchanged with the transfer engine's users: layers in, results out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Anything exposing the buffer protocol (collections.abc.Buffer needs Python 3.12).
Buffer = Any


@dataclass(frozen=True, slots=True)
class LayerPayload:
    """One produced layer: its index and a buffer (bytes, bytearray, numpy array, tensor.numpy()).

    The buffer is sent in place and must stay unmodified until `send()` returns.
    """

    index: int
    data: Buffer


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What the sender learns when the receiver confirmed every chunk and the commit."""

    transfer_id: str
    total_bytes: int
    layers: int
    seconds: float  # first layer handed in -> COMMITTED received
    tail_seconds: float  # last layer handed in -> COMMITTED received
    checksum: str  # algorithm used, e.g. "xxh3-64"
    verified: bool  # every chunk passed the receiver's checksum before commit
    retransmitted_chunks: int
    reconnects: int

    @property
    def gbps(self) -> float:
        return self.total_bytes * 8 / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ReceivedTransfer:
    """A completed transfer on the receiver: verified layer buffers in index order."""

    transfer_id: str
    peer_session: str  # hex id of the sending client session
    layers: tuple[memoryview, ...]
    total_bytes: int
    seconds: float  # BEGIN seen -> last chunk verified
    checksum: str
    rejected_chunks: int  # chunks that failed verification and were asked for again
