"""asyncio TCP transport for KV transfers: the public API in one place.

Receiver (decode side)::

    async def on_done(t: ReceivedTransfer) -> None: ...     # t.layers: verified memoryviews
    server = TransferServer("0.0.0.0", 7000, secret, on_done, allocator=my_allocator)
    await server.start()

Sender (prefill side)::

    async with TransferClient("10.0.0.2", 7000, secret, connections=4) as client:
        result = await client.send("req-42", layer_stream)    # AsyncIterator[LayerPayload]
        print(result.gbps, result.tail_seconds, result.verified)
        view = client.telemetry()                              # LinkTelemetry for the scheduler

Each layer is cut into `chunk_bytes` chunks striped over the connections as they free up; chunks
are sent from the producer's buffer (memoryview slices, no copy) and land in the receiver's
preallocated buffer via recv_into, hashed as they land (XXH3-64 when `xxhash` is installed, else
CRC32) and acknowledged only when the checksum matches. A NACKed chunk is re-sent; a dropped
connection is re-opened and its unacknowledged chunks re-sent; the transfer completes when the
receiver has verified every byte and seen the sender's COMMIT.
"""

from __future__ import annotations

from prfaas.transfer.client import TransferClient
from prfaas.transfer.incoming import Allocator, ServerStats, default_allocator
from prfaas.transfer.payloads import LayerPayload, ReceivedTransfer, TransferResult
from prfaas.transfer.server import TransferServer

__all__ = [
    "Allocator",
    "LayerPayload",
    "ReceivedTransfer",
    "ServerStats",
    "TransferClient",
    "TransferResult",
    "TransferServer",
    "default_allocator",
]
