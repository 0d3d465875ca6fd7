"""Wire frames of the KV transfer protocol (sans-IO): encoding and a bounded incremental decoder.

Every frame is an 8-byte header `magic "PK" | version u8 | type u8 | meta_len u32` followed by a
type-specific metadata block (big-endian struct, optional UTF-8 tail) of bounded size. A DATA
frame's metadata names `length` payload bytes that follow it on the stream; the decoder never
buffers payload: it either hands out views of what it was fed (`PayloadPart`) or lets the caller
read the payload straight into its destination and account for it with `consume_payload`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import ClassVar

from prfaas.transfer.errors import FrameError

MAGIC = b"PK"
VERSION = 1
HEADER = struct.Struct("!2sBBI")
HEADER_BYTES = HEADER.size
MAX_META_BYTES = 2048
MIN_CHUNK_BYTES = 4096
MAX_CHUNK_BYTES = 64 << 20
MAX_LAYERS = 1 << 16
MAX_NAME_BYTES = 256
MAX_TEXT_BYTES = 1024
NONCE_BYTES = 32
MAC_BYTES = 32
SESSION_BYTES = 16


@dataclass(frozen=True, slots=True)
class Hello:
    TYPE: ClassVar[int] = 1
    session_id: bytes
    nonce: bytes
    conn_index: int


@dataclass(frozen=True, slots=True)
class Challenge:
    TYPE: ClassVar[int] = 2
    nonce: bytes
    mac: bytes


@dataclass(frozen=True, slots=True)
class Auth:
    TYPE: ClassVar[int] = 3
    mac: bytes


@dataclass(frozen=True, slots=True)
class AuthOk:
    TYPE: ClassVar[int] = 4
    checksum_mask: int
    max_chunk_bytes: int
    instance: int  # random per server start: a change tells a client its transfers are gone


@dataclass(frozen=True, slots=True)
class Begin:
    TYPE: ClassVar[int] = 5
    xid: int
    n_layers: int  # 0 = not known yet (COMMIT fixes it)
    total_bytes: int  # 0 = not known yet
    chunk_bytes: int
    checksum_alg: int
    name: str


@dataclass(frozen=True, slots=True)
class Layer:
    TYPE: ClassVar[int] = 6
    xid: int
    layer: int
    nbytes: int


@dataclass(frozen=True, slots=True)
class Data:
    TYPE: ClassVar[int] = 7
    xid: int
    layer: int
    offset: int
    length: int
    checksum: int


@dataclass(frozen=True, slots=True)
class Ack:
    TYPE: ClassVar[int] = 8
    xid: int
    layer: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Nack:
    TYPE: ClassVar[int] = 9
    xid: int
    layer: int
    offset: int
    length: int
    reason: int


@dataclass(frozen=True, slots=True)
class Commit:
    TYPE: ClassVar[int] = 10
    xid: int
    n_layers: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Committed:
    TYPE: ClassVar[int] = 11
    xid: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Abort:
    TYPE: ClassVar[int] = 12
    xid: int
    reason: str


@dataclass(frozen=True, slots=True)
class Error:
    TYPE: ClassVar[int] = 13
    code: int
    message: str


Frame = (
    Hello | Challenge | Auth | AuthOk | Begin | Layer | Data | Ack | Nack | Commit | Committed
) | (Abort | Error)

NACK_CHECKSUM = 1  # the payload failed verification: send it again
NACK_BUSY = 2  # the same chunk is still landing from another connection: try again a bit later


@dataclass(frozen=True, slots=True)
class PayloadPart:
    """Payload bytes of the current DATA frame, as a view of what was fed (no copy)."""

    data: memoryview
    last: bool


@dataclass(frozen=True, slots=True)
class _Spec:
    cls: type
    fixed: struct.Struct
    tail_max: int  # 0: no UTF-8 tail field


_SPECS: dict[int, _Spec] = {
    s.cls.TYPE: s  # type: ignore[attr-defined]
    for s in (
        _Spec(Hello, struct.Struct(f"!{SESSION_BYTES}s{NONCE_BYTES}sH"), 0),
        _Spec(Challenge, struct.Struct(f"!{NONCE_BYTES}s{MAC_BYTES}s"), 0),
        _Spec(Auth, struct.Struct(f"!{MAC_BYTES}s"), 0),
        _Spec(AuthOk, struct.Struct("!IIQ"), 0),
        _Spec(Begin, struct.Struct("!QIQIB"), MAX_NAME_BYTES),
        _Spec(Layer, struct.Struct("!QIQ"), 0),
        _Spec(Data, struct.Struct("!QIQIQ"), 0),
        _Spec(Ack, struct.Struct("!QIQI"), 0),
        _Spec(Nack, struct.Struct("!QIQIB"), 0),
        _Spec(Commit, struct.Struct("!QIQ"), 0),
        _Spec(Committed, struct.Struct("!QQ"), 0),
        _Spec(Abort, struct.Struct("!Q"), MAX_TEXT_BYTES),
        _Spec(Error, struct.Struct("!H"), MAX_TEXT_BYTES),
    )
}
_BY_CLS = {spec.cls: spec for spec in _SPECS.values()}
assert all(s.fixed.size + s.tail_max <= MAX_META_BYTES for s in _SPECS.values())
DATA_HEADER_BYTES = HEADER_BYTES + _SPECS[Data.TYPE].fixed.size  # what precedes a payload


def encode(frame: Frame) -> bytes:
    """Header + metadata of `frame` (a DATA frame's payload is sent separately by the caller)."""
    spec = _BY_CLS[type(frame)]
    values = [getattr(frame, f.name) for f in fields(frame)]
    tail = b""
    if spec.tail_max:
        tail = str(values.pop()).encode("utf-8")[: spec.tail_max]
    try:
        meta = spec.fixed.pack(*values) + tail
    except struct.error as exc:
        raise FrameError(f"cannot encode {type(frame).__name__}: {exc}") from exc
    return HEADER.pack(MAGIC, VERSION, frame.TYPE, len(meta)) + meta


def _parse(ftype: int, meta: bytes) -> Frame:
    spec = _SPECS[ftype]
    values: list[object] = list(spec.fixed.unpack_from(meta))
    if spec.tail_max:
        try:
            values.append(meta[spec.fixed.size :].decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise FrameError(f"{spec.cls.__name__}: text field is not UTF-8") from exc
    frame: Frame = spec.cls(*values)
    _check_fields(frame)
    return frame


def _check_fields(frame: Frame) -> None:
    """Range checks that keep every later allocation bounded."""
    if isinstance(frame, Data | Ack | Nack) and not 0 < frame.length <= MAX_CHUNK_BYTES:
        raise FrameError(f"{type(frame).__name__}: chunk length {frame.length} out of range")
    if isinstance(frame, Begin):
        if not MIN_CHUNK_BYTES <= frame.chunk_bytes <= MAX_CHUNK_BYTES:
            raise FrameError(f"BEGIN: chunk size {frame.chunk_bytes} out of range")
        if frame.n_layers > MAX_LAYERS:
            raise FrameError(f"BEGIN: {frame.n_layers} layers is more than {MAX_LAYERS}")
    if isinstance(frame, Layer | Data | Ack | Nack) and frame.layer >= MAX_LAYERS:
        raise FrameError(f"{type(frame).__name__}: layer index {frame.layer} out of range")
    if isinstance(frame, Commit) and not 0 < frame.n_layers <= MAX_LAYERS:
        raise FrameError(f"COMMIT: {frame.n_layers} layers out of range")


class FrameDecoder:
    """Incremental decoder with a buffer bounded by HEADER_BYTES + MAX_META_BYTES.

    `feed()` accepts any byte split and returns frames and payload parts. The zero-copy path reads
    exactly `want()` bytes while `in_payload` is false, and otherwise reads the payload directly
    into its destination and calls `consume_payload(n)`. After an error the decoder stays broken.
    """

    __slots__ = ("_buf", "_error", "_meta_len", "_payload_left", "_type")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._type = 0
        self._meta_len = -1  # -1: reading the header
        self._payload_left = 0
        self._error: FrameError | None = None

    @property
    def in_payload(self) -> bool:
        return self._payload_left > 0

    def want(self) -> int:
        """Bytes needed to finish the current header, metadata or payload."""
        if self._payload_left:
            return self._payload_left
        target = HEADER_BYTES if self._meta_len < 0 else self._meta_len
        return target - len(self._buf)

    def consume_payload(self, n: int) -> bool:
        """Account for `n` payload bytes the caller read itself; True when the payload is done."""
        if not 0 < n <= self._payload_left:
            raise FrameError(f"consume_payload({n}) with {self._payload_left} payload bytes due")
        self._payload_left -= n
        return self._payload_left == 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | PayloadPart]:
        if self._error is not None:
            raise self._error
        view = memoryview(data).cast("B")
        out: list[Frame | PayloadPart] = []
        try:
            pos = 0
            while pos < len(view):
                if self._payload_left:
                    n = min(self._payload_left, len(view) - pos)
                    self._payload_left -= n
                    out.append(PayloadPart(view[pos : pos + n], self._payload_left == 0))
                    pos += n
                    continue
                take = min(self.want(), len(view) - pos)
                self._buf += view[pos : pos + take]
                pos += take
                if self.want() == 0:
                    frame = self._step()
                    if frame is not None:
                        out.append(frame)
        except FrameError as exc:
            self._error = exc
            raise
        return out

    def _step(self) -> Frame | None:
        if self._meta_len < 0:
            magic, version, ftype, meta_len = HEADER.unpack(self._buf)
            self._buf.clear()
            if magic != MAGIC:
                raise FrameError(f"bad magic {bytes(magic)!r}")
            if version != VERSION:
                raise FrameError(f"unsupported protocol version {version} (this side: {VERSION})")
            spec = _SPECS.get(ftype)
            if spec is None:
                raise FrameError(f"unknown frame type {ftype}")
            if not spec.fixed.size <= meta_len <= spec.fixed.size + spec.tail_max:
                raise FrameError(f"{spec.cls.__name__}: metadata length {meta_len} out of range")
            self._type, self._meta_len = ftype, meta_len
            if meta_len:
                return None
        frame = _parse(self._type, bytes(self._buf))
        self._buf.clear()
        self._meta_len = -1
        if isinstance(frame, Data):
            self._payload_left = frame.length
        return frame
