"""Per-peer link telemetry: goodput EWMA, in-flight bytes, queue depth, TCP_INFO RTT/retransmits.

`LinkTelemetry` is a frozen snapshot a scheduler view can hold. Caveat: TCP_INFO describes the
local TCP hop; behind a TCP-splitting relay or proxy its RTT is the hop's, not the path's.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

# struct tcp_info (linux/tcp.h) field offsets; present since Linux 4.x.
_U32 = struct.Struct("=I")
_OFF_RTT_US = 68
_OFF_TOTAL_RETRANS = 100
_OFF_SEGS_OUT = 136
_TCP_INFO_BYTES = 232


@dataclass(frozen=True, slots=True)
class TcpInfo:
    rtt_ms: float
    retransmits: int  # segments retransmitted over the socket's life
    segments_out: int


def read_tcp_info(sock: socket.socket) -> TcpInfo | None:
    """RTT and retransmission counters of a TCP socket, or None off Linux / on error."""
    opt = getattr(socket, "TCP_INFO", None)
    if opt is None or sock.fileno() < 0:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, opt, _TCP_INFO_BYTES)
    except OSError:
        return None
    if len(raw) < _OFF_SEGS_OUT + 4:
        return None
    return TcpInfo(
        rtt_ms=_U32.unpack_from(raw, _OFF_RTT_US)[0] / 1000.0,
        retransmits=_U32.unpack_from(raw, _OFF_TOTAL_RETRANS)[0],
        segments_out=_U32.unpack_from(raw, _OFF_SEGS_OUT)[0],
    )


@dataclass(frozen=True, slots=True)
class LinkTelemetry:
    """What the scheduler sees of one peer link at one instant."""

    peer: str
    capacity_gbps: float  # configured capacity; when unknown, the best goodput seen so far
    egress_gbps: float  # goodput EWMA of acknowledged bytes
    in_flight_bytes: int  # sent, not yet acknowledged
    delivered_bytes: int  # acknowledged by the receiver, since the client started
    queue_depth: int  # chunks waiting for a connection
    queued_bytes: int
    rtt_ms: float  # mean smoothed TCP RTT of live connections (handshake RTT before any)
    retransmits: int  # TCP segments retransmitted, all connections ever opened
    retransmit_rate: float  # retransmitted / sent segments
    chunk_retransmits: int  # chunks re-sent after a NACK or a dropped connection
    connections: int  # live connections
    timestamp_s: float  # time.monotonic() of the snapshot

    @property
    def utilization(self) -> float:
        return self.egress_gbps / self.capacity_gbps if self.capacity_gbps > 0 else 0.0

    @property
    def congested(self) -> bool:
        """Early congestion signal: more than 1% of segments retransmitted."""
        return self.retransmit_rate > 0.01


class LinkMonitor:
    """Accumulates per-peer counters; `snapshot()` turns them into a `LinkTelemetry`."""

    def __init__(
        self,
        peer: str,
        capacity_gbps: float | None = None,
        *,
        tau_s: float = 0.5,
        window_s: float = 0.05,
    ) -> None:
        self.peer = peer
        self.capacity_gbps = capacity_gbps
        self.tau_s = tau_s
        self.window_s = window_s
        self.handshake_rtt_ms = 0.0
        self._ewma_gbps = 0.0
        self._peak_gbps = 0.0
        self._win_start = time.monotonic()
        self._win_bytes = 0
        self.delivered_bytes = 0  # cumulative acknowledged bytes: what crossed the link
        self._retired_retrans = 0
        self._retired_segs = 0

    def on_acked(self, nbytes: int, now: float | None = None) -> None:
        self._roll(time.monotonic() if now is None else now)
        self._win_bytes += nbytes
        self.delivered_bytes += nbytes

    def on_busy(self, now: float) -> None:
        """Data started flowing; before the first sample, the first window starts here."""
        if self._ewma_gbps == 0.0 and self._win_bytes == 0:
            self._win_start = now

    def on_handshake(self, rtt_s: float) -> None:
        self.handshake_rtt_ms = rtt_s * 1000.0

    def _roll(self, now: float) -> None:
        dt = now - self._win_start
        if dt < self.window_s:
            return
        sample = self._win_bytes * 8 / dt / 1e9
        if self._peak_gbps == 0.0 and self._ewma_gbps == 0.0:
            self._ewma_gbps = sample  # first busy window: start from a sample, not from zero
        else:
            alpha = 1.0 - math.exp(-dt / self.tau_s)
            self._ewma_gbps += alpha * (sample - self._ewma_gbps)
        self._peak_gbps = max(self._peak_gbps, self._ewma_gbps)
        self._win_start, self._win_bytes = now, 0

    def retire(self, sock: socket.socket) -> None:
        """Keep a closing socket's retransmission counters in the totals."""
        info = read_tcp_info(sock)
        if info is not None:
            self._retired_retrans += info.retransmits
            self._retired_segs += info.segments_out

    def snapshot(
        self,
        sockets: Iterable[socket.socket],
        *,
        in_flight_bytes: int = 0,
        queue_depth: int = 0,
        queued_bytes: int = 0,
        chunk_retransmits: int = 0,
        connections: int | None = None,
        now: float | None = None,
    ) -> LinkTelemetry:
        now = time.monotonic() if now is None else now
        self._roll(now)
        infos = [i for i in (read_tcp_info(s) for s in sockets) if i is not None]
        retrans = self._retired_retrans + sum(i.retransmits for i in infos)
        segs = self._retired_segs + sum(i.segments_out for i in infos)
        rtt = sum(i.rtt_ms for i in infos) / len(infos) if infos else self.handshake_rtt_ms
        egress = self._ewma_gbps
        if egress == 0.0 and self._win_bytes and now > self._win_start:
            egress = self._win_bytes * 8 / (now - self._win_start) / 1e9  # no full window yet
        capacity = self.capacity_gbps if self.capacity_gbps else max(self._peak_gbps, egress)
        return LinkTelemetry(
            peer=self.peer,
            capacity_gbps=capacity,
            egress_gbps=egress,
            in_flight_bytes=in_flight_bytes,
            delivered_bytes=self.delivered_bytes,
            queue_depth=queue_depth,
            queued_bytes=queued_bytes,
            rtt_ms=rtt,
            retransmits=retrans,
            retransmit_rate=retrans / segs if segs else 0.0,
            chunk_retransmits=chunk_retransmits,
            connections=len(infos) if connections is None else connections,
            timestamp_s=now,
        )
