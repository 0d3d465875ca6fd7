"""Sans-IO per-transfer bookkeeping: which chunks exist, which are verified, when one is done.

Chunks are fixed-size slices of a layer (`chunk_bytes`, the last one shorter), named by
(layer, offset). That naming is what makes resumption work: after a connection drops, the sender
re-sends exactly the chunks that were never acknowledged, and the receiver acknowledges a
duplicate of an already-verified chunk without touching the verified bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prfaas.transfer import frames as fr
from prfaas.transfer.errors import ChecksumError, SequenceError

NEW, DUPLICATE, BUSY = "new", "duplicate", "busy"


def chunk_length(nbytes: int, offset: int, chunk_bytes: int) -> int:
    return min(chunk_bytes, nbytes - offset)


@dataclass(slots=True)
class _RecvLayer:
    nbytes: int
    chunk_bytes: int
    verified: bytearray = field(init=False)
    verified_bytes: int = 0

    def __post_init__(self) -> None:
        self.verified = bytearray(-(-self.nbytes // self.chunk_bytes))


class ReceiveTracker:
    """Receiver view of one transfer; raises `SequenceError` on anything inconsistent."""

    def __init__(self, begin: fr.Begin, *, max_transfer_bytes: int) -> None:
        if begin.total_bytes > max_transfer_bytes:
            raise SequenceError(
                f"transfer {begin.name!r} announces {begin.total_bytes} B, "
                f"more than the receiver's limit of {max_transfer_bytes} B"
            )
        self.begin = begin
        self.name = begin.name
        self.max_transfer_bytes = max_transfer_bytes
        self.layers: dict[int, _RecvLayer] = {}
        self.declared_bytes = 0
        self.verified_bytes = 0
        self.rejected_chunks = 0
        self.landing: set[tuple[int, int]] = set()  # (layer, chunk index) being written now
        self.commit: fr.Commit | None = None

    def check_begin(self, begin: fr.Begin) -> None:
        if begin != self.begin:
            raise SequenceError(f"BEGIN for transfer {begin.xid} differs between connections")

    def _n_layers(self) -> int:
        if self.commit is not None:
            return self.commit.n_layers
        return self.begin.n_layers or fr.MAX_LAYERS

    def declare_layer(self, layer: fr.Layer) -> bool:
        """True when the layer is new (the caller then allocates its buffer)."""
        seen = self.layers.get(layer.layer)
        if seen is not None:
            if seen.nbytes != layer.nbytes:
                raise SequenceError(f"layer {layer.layer} re-declared with a different size")
            return False
        if layer.layer >= self._n_layers():
            raise SequenceError(f"layer {layer.layer} beyond the transfer's {self._n_layers()}")
        limit = self.begin.total_bytes or self.max_transfer_bytes
        if self.commit is not None:
            limit = self.commit.total_bytes
        if self.declared_bytes + layer.nbytes > limit:
            raise SequenceError(f"layer {layer.layer} takes the transfer past {limit} B")
        self.layers[layer.layer] = _RecvLayer(layer.nbytes, self.begin.chunk_bytes)
        self.declared_bytes += layer.nbytes
        return True

    def plan_chunk(self, data: fr.Data) -> str:
        """Validate a DATA header: NEW (land it), DUPLICATE (verified already) or BUSY.

        BUSY means another connection is still writing this chunk into its buffer (a resend
        after a presumed-dead connection): a second writer could overwrite verified bytes.
        A NEW chunk is marked as landing until `chunk_done()`.
        """
        state = self.layers.get(data.layer)
        if state is None:
            raise SequenceError(f"DATA for undeclared layer {data.layer}")
        cb = self.begin.chunk_bytes
        if data.offset % cb or data.offset >= state.nbytes:
            raise SequenceError(f"DATA offset {data.offset} is not a chunk of layer {data.layer}")
        if data.length != chunk_length(state.nbytes, data.offset, cb):
            raise SequenceError(f"DATA length {data.length} at offset {data.offset} is wrong")
        idx = data.offset // cb
        if state.verified[idx]:
            return DUPLICATE
        if (data.layer, idx) in self.landing:
            return BUSY
        self.landing.add((data.layer, idx))
        return NEW

    def chunk_done(self, layer: int, offset: int) -> None:
        """The chunk stopped landing (verified, rejected, or its connection died)."""
        self.landing.discard((layer, offset // self.begin.chunk_bytes))

    def chunk_verified(self, layer: int, offset: int, length: int) -> None:
        state = self.layers[layer]
        idx = offset // self.begin.chunk_bytes
        if not state.verified[idx]:
            state.verified[idx] = 1
            state.verified_bytes += length
            self.verified_bytes += length

    def on_commit(self, commit: fr.Commit) -> None:
        begin = self.begin
        if self.commit is not None and self.commit != commit:
            raise SequenceError(f"COMMIT for transfer {commit.xid} changed")
        if (begin.n_layers and commit.n_layers != begin.n_layers) or (
            begin.total_bytes and commit.total_bytes != begin.total_bytes
        ):
            raise SequenceError(f"COMMIT for transfer {commit.xid} contradicts its BEGIN")
        if commit.total_bytes > self.max_transfer_bytes or self.declared_bytes > commit.total_bytes:
            raise SequenceError(f"COMMIT for transfer {commit.xid}: bad total {commit.total_bytes}")
        if any(i >= commit.n_layers for i in self.layers):
            raise SequenceError(f"COMMIT for transfer {commit.xid}: fewer layers than declared")
        self.commit = commit

    @property
    def complete(self) -> bool:
        c = self.commit
        return (
            c is not None
            and len(self.layers) == c.n_layers
            and self.declared_bytes == c.total_bytes
            and self.verified_bytes == c.total_bytes
        )


@dataclass(slots=True, eq=False)
class Chunk:
    """One chunk a sender owes; `view` aliases the producer's layer buffer (never copied)."""

    xid: int
    layer: int
    offset: int
    view: memoryview
    checksum: int | None = None
    attempts: int = 0
    conn: int | None = None  # connection it is in flight on
    acked: bool = False


class SendTracker:
    """Sender view of one transfer: chunks of each layer and their acknowledgement state."""

    def __init__(self, begin: fr.Begin, *, max_attempts: int = 4) -> None:
        self.begin = begin
        self.max_attempts = max_attempts
        self.layers: dict[int, fr.Layer] = {}
        self.chunks: dict[tuple[int, int], Chunk] = {}
        self.total_bytes = 0
        self.acked_bytes = 0
        self.retransmits = 0
        self.commit: fr.Commit | None = None

    def add_layer(self, index: int, data: memoryview) -> list[Chunk]:
        if index in self.layers or not 0 <= index < fr.MAX_LAYERS:
            raise ValueError(f"layer index {index} repeated or out of range")
        if self.commit is not None:
            raise ValueError("layer added after the transfer was committed")
        view = data.cast("B") if data.format != "B" or data.ndim != 1 else data
        xid, cb = self.begin.xid, self.begin.chunk_bytes
        self.layers[index] = fr.Layer(xid, index, len(view))
        self.total_bytes += len(view)
        new = [Chunk(xid, index, off, view[off : off + cb]) for off in range(0, len(view), cb)]
        for chunk in new:
            self.chunks[(index, chunk.offset)] = chunk
        return new

    def finish(self) -> fr.Commit:
        self.commit = fr.Commit(self.begin.xid, len(self.layers), self.total_bytes)
        if not self.layers:
            raise ValueError("a transfer needs at least one layer")
        return self.commit

    def _lookup(self, frame: fr.Ack | fr.Nack) -> Chunk:
        chunk = self.chunks.get((frame.layer, frame.offset))
        if chunk is None or len(chunk.view) != frame.length:
            raise SequenceError(
                f"{type(frame).__name__.upper()} for unknown chunk {frame.layer}/{frame.offset}"
            )
        return chunk

    def ack(self, frame: fr.Ack) -> Chunk | None:
        """The acknowledged chunk, or None if it was already acknowledged."""
        chunk = self._lookup(frame)
        if chunk.acked:
            return None
        chunk.acked, chunk.conn = True, None
        self.acked_bytes += len(chunk.view)
        return chunk

    def nack(self, frame: fr.Nack) -> Chunk:
        """The chunk to re-send; raises `ChecksumError` once it failed `max_attempts` times."""
        chunk = self._lookup(frame)
        chunk.conn = None
        if frame.reason == fr.NACK_BUSY:
            chunk.attempts -= 1  # not a failed delivery
            return chunk
        if chunk.attempts >= self.max_attempts:
            raise ChecksumError(
                f"transfer {self.begin.name!r}: chunk layer {chunk.layer} offset {chunk.offset} "
                f"failed checksum verification {chunk.attempts} times"
            )
        self.retransmits += 1
        return chunk

    @property
    def all_acked(self) -> bool:
        return self.commit is not None and self.acked_bytes == self.total_bytes
