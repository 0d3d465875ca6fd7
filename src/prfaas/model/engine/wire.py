"""Wire format of a request's cache: a checked header, then raw tensor bytes sent without copies.

Message = prefix `<8sHII` (magic, format version, header length, header CRC32), a JSON header
naming the model (id + config hash), the token count and, per layer, its kind and each tensor's
dtype, shape, payload offset, length and CRC32; then the payload. A message may carry all layers
(a whole cache) or a subset (layer-wise streaming: one message per finished layer, joined by
`assemble`). Every check runs before any tensor is built.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from prfaas.model.engine.cache_ops import LayerState
from prfaas.model.engine.errors import WireFormatError

if TYPE_CHECKING:
    from prfaas.model.engine.engine import Engine, RequestCache

MAGIC = b"PRFAASKV"
FORMAT_VERSION = 1
PREFIX = struct.Struct("<8sHII")
MAX_HEADER_BYTES = 16 << 20
ALIGN = 64
_ZEROS = bytes(ALIGN)
WIRE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_NAMES = {v: k for k, v in WIRE_DTYPES.items()}
# The recurrent state stays fp32 on the wire: it accumulates the whole prefix, and is small.
_FP32_ALWAYS = frozenset({"recurrent"})


@dataclass(frozen=True, slots=True)
class WireCache:
    """Buffers to send in order (the header first); they view the tensors they came from."""

    buffers: tuple[memoryview, ...]
    header: dict[str, Any]
    total_bytes: int
    _keep: tuple[torch.Tensor, ...]

    def tobytes(self) -> bytes:
        """One contiguous copy (tests, files); a transfer engine sends `buffers` instead."""
        return b"".join(self.buffers)


def tokens_hash(token_ids: Sequence[int]) -> str:
    return hashlib.blake2b(
        struct.pack(f"<{len(token_ids)}q", *token_ids), digest_size=16
    ).hexdigest()


def encode_layers(
    engine: Engine,
    layers: Iterable[LayerState],
    num_tokens: int,
    wire_dtype: torch.dtype | None = None,
    token_ids: Sequence[int] | None = None,
) -> WireCache:
    """Serialise `layers` (all of a cache, or one finished layer while prefill continues)."""
    dtype = wire_dtype or torch.float32
    if dtype not in _NAMES:
        raise WireFormatError(f"wire dtype must be one of {', '.join(WIRE_DTYPES)}, got {dtype}")
    records, pieces, keep, offset = [], [], [], 0
    for state in layers:
        tensors = []
        for name, t in state.tensors.items():
            out = t.contiguous() if name in _FP32_ALWAYS else t.to(dtype).contiguous()
            raw = out.view(torch.uint8).reshape(-1).numpy().data if out.numel() else memoryview(b"")
            pad = -offset % ALIGN
            if pad:
                pieces.append(memoryview(_ZEROS)[:pad])
                offset += pad
            tensors.append(
                {
                    "name": name,
                    "dtype": _NAMES[out.dtype],
                    "shape": list(out.shape),
                    "offset": offset,
                    "nbytes": raw.nbytes,
                    "crc32": zlib.crc32(raw),
                }
            )
            pieces.append(raw)
            keep.append(out)
            offset += raw.nbytes
        records.append(
            {
                "index": state.index,
                "kind": state.kind,
                "num_tokens": state.num_tokens,
                "conv_kernel_size": state.conv_kernel_size,
                "tensors": tensors,
            }
        )
    header = {
        "model_id": engine.model_id,
        "config_hash": engine.config_hash,
        "num_layers": len(engine.layer_kinds),
        "num_tokens": num_tokens,
        "wire_dtype": _NAMES[dtype],
        "payload_bytes": offset,
        "layers": records,
        "tokens_hash": tokens_hash(token_ids) if token_ids is not None else None,
    }
    blob = json.dumps(header, separators=(",", ":")).encode()
    prefix = PREFIX.pack(MAGIC, FORMAT_VERSION, len(blob), zlib.crc32(blob))
    buffers = (memoryview(prefix + blob), *pieces)
    return WireCache(buffers, header, PREFIX.size + len(blob) + offset, tuple(keep))


def encode_cache(engine: Engine, cache: RequestCache, wire_dtype: torch.dtype | None) -> WireCache:
    return encode_layers(engine, cache.layers, cache.num_tokens, wire_dtype, cache.token_ids)


def header_length(prefix: bytes | memoryview) -> int:
    """Bytes of prefix + header, from the first PREFIX.size bytes (to size a receive buffer)."""
    if len(prefix) < PREFIX.size:
        raise WireFormatError(
            f"truncated cache: {len(prefix)} bytes, the prefix alone is {PREFIX.size}"
        )
    magic, version, length, _ = PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        raise WireFormatError("not a prfaas cache message (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise WireFormatError(f"cache format version {version}, this build reads {FORMAT_VERSION}")
    if length > MAX_HEADER_BYTES:
        raise WireFormatError(f"cache header of {length} bytes exceeds {MAX_HEADER_BYTES}")
    return int(PREFIX.size + length)


def parse_header(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The header, its CRC verified; WireFormatError on any damage."""
    view = memoryview(data).cast("B")
    end = header_length(view[: PREFIX.size])
    if view.nbytes < end:
        raise WireFormatError(f"truncated cache: header needs {end} bytes, got {view.nbytes}")
    _, _, _, crc = PREFIX.unpack_from(view)
    blob = view[PREFIX.size : end]
    if zlib.crc32(blob) != crc:
        raise WireFormatError("cache header is corrupted (CRC mismatch)")
    try:
        header = json.loads(bytes(blob))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireFormatError(f"cache header is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise WireFormatError("cache header must be a JSON object")
    return header


def decode_layers(
    engine: Engine, data: Any, expect_tokens: Sequence[int] | None = None, *, copy: bool = True
) -> tuple[dict[str, Any], list[LayerState]]:
    """Validate a message against `engine` and rebuild its layers at the compute dtype."""
    view = _contiguous(data)
    header = parse_header(view)
    try:
        _check(engine, header, view.nbytes - header_length(view[: PREFIX.size]), expect_tokens)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise WireFormatError(f"cache header is malformed: {exc!r}") from None
    payload = view[header_length(view[: PREFIX.size]) :]
    layers = []
    for rec in header["layers"]:
        tensors = {}
        for t in rec["tensors"]:
            raw = payload[t["offset"] : t["offset"] + t["nbytes"]]
            if zlib.crc32(raw) != t["crc32"]:
                raise WireFormatError(f"layer {rec['index']} {t['name']}: payload corrupted (CRC)")
        for t in rec["tensors"]:
            tensors[t["name"]] = _tensor(payload, t, copy)
        layers.append(
            LayerState(
                rec["index"], rec["kind"], rec["num_tokens"], tensors, rec["conv_kernel_size"]
            )
        )
    return header, layers


def decode_cache(engine: Engine, data: Any, expect_tokens: Sequence[int] | None) -> RequestCache:
    """A whole cache (every layer) from one message."""
    return assemble(engine, [data], expect_tokens)


def collect_layers(
    engine: Engine, messages: Iterable[Any], expect_tokens: Sequence[int] | None = None
) -> tuple[list[LayerState], set[int]]:
    """Every layer of a cache's messages (any order), each exactly once, in layer order, and the
    token counts the messages declare (one, unless a held prefix was left out: splice.py)."""
    by_index: dict[int, LayerState] = {}
    counts: set[int] = set()
    for message in messages:
        header, layers = decode_layers(engine, message, expect_tokens)
        counts.add(header["num_tokens"])
        for state in layers:
            if state.index in by_index:
                raise WireFormatError(f"layer {state.index} arrived twice")
            by_index[state.index] = state
    if len(by_index) != len(engine.layer_kinds):
        raise WireFormatError(
            f"incomplete cache: {len(by_index)} of {len(engine.layer_kinds)} layers"
        )
    return [by_index[i] for i in range(len(by_index))], counts


def assemble(
    engine: Engine, messages: Iterable[Any], expect_tokens: Sequence[int] | None = None
) -> RequestCache:
    """Join messages (a whole cache, or one per layer in any order) into one RequestCache."""
    from prfaas.model.engine.engine import RequestCache

    layers, counts = collect_layers(engine, messages, expect_tokens)
    if len(counts) != 1:
        raise WireFormatError("messages of one cache disagree on its token count")
    ids = tuple(expect_tokens) if expect_tokens is not None else None
    return RequestCache(tuple(layers), counts.pop(), ids)


def _contiguous(data: Any) -> memoryview:
    if isinstance(data, bytes | bytearray | memoryview):
        return memoryview(data).cast("B")
    if isinstance(data, WireCache):
        return memoryview(data.tobytes())
    return memoryview(b"".join(data))  # a list of received buffers


def _check(
    engine: Engine, h: dict[str, Any], payload_len: int, expect: Sequence[int] | None
) -> None:
    """Model, sizes, layout and shapes: everything but the payload CRCs."""
    if (h["model_id"], h["config_hash"]) != (engine.model_id, engine.config_hash):
        raise WireFormatError(
            f"cache is for model {h['model_id']!r} (config {h['config_hash']}), this engine serves "
            f"{engine.model_id!r} (config {engine.config_hash})"
        )
    if h["wire_dtype"] not in WIRE_DTYPES or h["num_layers"] != len(engine.layer_kinds):
        raise WireFormatError(f"unknown wire dtype or layer count in {h['wire_dtype']!r}")
    if payload_len != h["payload_bytes"]:
        raise WireFormatError(
            f"cache payload is {payload_len} bytes, header says {h['payload_bytes']} "
            "(truncated or wrong length)"
        )
    n = h["num_tokens"]
    if not isinstance(n, int) or not 0 < n <= engine.max_context_tokens:
        raise WireFormatError(
            f"cache token count {n!r} is outside (0, {engine.max_context_tokens}]"
        )
    if expect is not None and h["tokens_hash"] != tokens_hash(expect):
        raise WireFormatError("cache was computed for other tokens than this request's prompt")
    template = engine.layer_template()
    end = 0
    for rec in h["layers"]:
        if not 0 <= rec["index"] < len(template):
            raise WireFormatError(f"layer index {rec['index']!r} out of range")
        ref = template[rec["index"]]
        if rec["kind"] != ref.kind or rec["num_tokens"] != n:
            raise WireFormatError(f"layer {rec['index']}: kind/length does not match this model")
        if [t["name"] for t in rec["tensors"]] != list(ref.tensors):
            raise WireFormatError(f"layer {rec['index']}: unexpected tensors")
        for t in rec["tensors"]:
            shape = list(ref.tensors[t["name"]].shape)
            if ref.kind == "attention":
                shape[-2] = n
            itemsize = WIRE_DTYPES[t["dtype"]].itemsize
            if t["shape"] != shape or t["nbytes"] != math.prod(shape) * itemsize:
                raise WireFormatError(
                    f"layer {rec['index']} {t['name']}: shape {t['shape']} != {shape}"
                )
            if t["offset"] < end or t["offset"] % ALIGN or t["offset"] + t["nbytes"] > payload_len:
                raise WireFormatError(f"layer {rec['index']} {t['name']}: bad byte range")
            end = t["offset"] + t["nbytes"]


def _tensor(payload: memoryview, t: dict[str, Any], copy: bool) -> torch.Tensor:
    dtype = WIRE_DTYPES[t["dtype"]]
    count = t["nbytes"] // dtype.itemsize
    if count == 0:
        return torch.empty(t["shape"], dtype=torch.float32)
    raw = payload[t["offset"] : t["offset"] + t["nbytes"]]
    # One copy at most: the fp32 cast copies anyway; fp32 copies only if asked or read-only.
    own = raw.readonly or (copy and dtype == torch.float32)
    flat = torch.frombuffer(bytearray(raw) if own else raw, dtype=dtype, count=count)
    return flat.view(t["shape"]).to(torch.float32)
