"""What the receiving side keeps per transfer, its counters, and how layers get their buffers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from prfaas.transfer.tracker import ReceiveTracker

Allocator = Callable[[str, int, int], memoryview]
Key = tuple[bytes, int]  # (peer session, transfer xid)


def default_allocator(transfer_id: str, layer: int, nbytes: int) -> memoryview:
    return memoryview(bytearray(nbytes))


class Reject(Exception):
    """A transfer (not the connection) is refused: the peer gets ABORT with this message."""


@dataclass(slots=True)
class ServerStats:
    connections: int = 0
    auth_failures: int = 0
    protocol_errors: int = 0
    transfers_completed: int = 0
    chunks_rejected: int = 0
    bytes_verified: int = 0


@dataclass(slots=True)
class Incoming:
    tracker: ReceiveTracker
    started: float
    last_activity: float
    buffers: dict[int, memoryview] = field(default_factory=dict)
