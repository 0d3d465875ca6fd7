"""Mooncake-format trace reader (one JSON object per line: timestamp ms, lengths, hash ids)."""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from prfaas.errors import UsageError

# Mooncake traces use 512-token blocks for hash_ids (src/prfaas/data/traces/README.md).
TRACE_BLOCK_TOKENS = 512


class TraceFormatError(UsageError):
    """A trace line is malformed; the message names the file and the 1-based line number."""


class _Row(msgspec.Struct):
    timestamp: float
    input_length: int
    output_length: int
    hash_ids: list[int] = []


@dataclass(frozen=True, slots=True)
class TraceRequest:
    """One request of a trace; timestamps are converted from milliseconds to seconds."""

    timestamp_s: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TraceData:
    """Parsed trace: the requests in file order and how many malformed lines were skipped."""

    path: Path
    requests: list[TraceRequest]
    skipped_lines: int = 0
    skipped_line_numbers: tuple[int, ...] = field(default=())

    def input_lengths(self) -> npt.NDArray[np.int64]:
        return np.fromiter((r.input_length for r in self.requests), np.int64, len(self.requests))

    def output_lengths(self) -> npt.NDArray[np.int64]:
        return np.fromiter((r.output_length for r in self.requests), np.int64, len(self.requests))

    def arrival_times_s(self) -> npt.NDArray[np.float64]:
        return np.fromiter((r.timestamp_s for r in self.requests), np.float64, len(self.requests))

    @property
    def duration_s(self) -> float:
        if not self.requests:
            return 0.0
        times = self.arrival_times_s()
        return float(times.max() - times.min())


_DECODER = msgspec.json.Decoder(_Row)


def _check_row(row: _Row) -> str | None:
    """Semantic checks msgspec's types cannot express; returns a problem or None."""
    if not math.isfinite(row.timestamp) or row.timestamp < 0:
        return f"timestamp must be a finite number >= 0, got {row.timestamp!r}"
    if row.input_length < 0:
        return f"input_length must be >= 0, got {row.input_length}"
    if row.output_length < 0:
        return f"output_length must be >= 0, got {row.output_length}"
    return None


def _read_bytes(p: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (by its magic number, not its name)."""
    try:
        raw = p.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except OSError as exc:  # gzip.BadGzipFile is an OSError too
        raise UsageError(f"cannot read trace {p}: {exc.strerror or exc}") from None
    except (EOFError, zlib.error) as exc:
        raise UsageError(f"cannot read trace {p}: truncated or corrupt gzip ({exc})") from None


def read_trace(path: str | Path, *, skip_bad_lines: bool = False) -> TraceData:
    """Read a Mooncake-format JSONL trace (`.jsonl`, or gzip-compressed `.jsonl.gz`).

    A malformed line raises TraceFormatError naming the file and line, unless skip_bad_lines is set,
    in which case it is skipped and counted. Blank lines are ignored silently.
    """
    p = Path(path)
    raw = _read_bytes(p)
    requests: list[TraceRequest] = []
    skipped: list[int] = []
    for lineno, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = _DECODER.decode(line)
            problem = _check_row(row)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problem = str(exc)
        if problem is not None:
            if skip_bad_lines:
                skipped.append(lineno)
                continue
            raise TraceFormatError(f"{p}:{lineno}: malformed trace line: {problem}")
        requests.append(
            TraceRequest(
                timestamp_s=row.timestamp / 1000.0,
                input_length=row.input_length,
                output_length=row.output_length,
                hash_ids=tuple(row.hash_ids),
            )
        )
    return TraceData(
        path=p, requests=requests, skipped_lines=len(skipped), skipped_line_numbers=tuple(skipped)
    )
