"""WAN emulation pieces: token bucket arithmetic, the delay relay, link telemetry."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from prfaas.transfer.shaping import ShapingRelay, TokenBucket
from prfaas.transfer.tcp import LayerPayload, TransferClient, TransferServer
from prfaas.transfer.telemetry import LinkMonitor, read_tcp_info


def test_token_bucket_serialises_bytes_at_its_rate() -> None:
    bucket = TokenBucket(rate_gbps=8.0, burst_bytes=0)  # 1 GB/s
    assert bucket.reserve(1_000_000, now=10.0) == pytest.approx(10.001)
    # Back to back: the next booking starts when the previous one leaves the link.
    assert bucket.reserve(1_000_000, now=10.0) == pytest.approx(10.002)
    # After idling, the link is free again at `now`.
    assert bucket.reserve(500_000, now=20.0) == pytest.approx(20.0005)
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_token_bucket_burst_lets_a_little_through_at_once() -> None:
    bucket = TokenBucket(rate_gbps=8.0, burst_bytes=100_000)
    assert bucket.reserve(50_000, now=5.0) == pytest.approx(5.0)  # within the burst credit


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_relay_adds_the_one_way_delay_in_each_direction() -> None:
    async def main() -> float:
        server, port = await _echo_server()
        async with ShapingRelay("127.0.0.1", 0, "127.0.0.1", port, one_way_delay_s=0.03) as relay:
            r, w = await asyncio.open_connection("127.0.0.1", relay.port)
            t0 = time.monotonic()
            w.write(b"ping")
            await w.drain()
            assert await r.readexactly(4) == b"ping"
            rtt = time.monotonic() - t0
            w.close()
        server.close()
        return rtt

    # A lower bound only: the relay must never deliver before the due time.
    assert asyncio.run(main()) >= 0.06


def test_transfer_through_a_shaped_link_completes_with_telemetry() -> None:
    async def main() -> None:
        async with TransferServer("127.0.0.1", 0, b"k") as srv, ShapingRelay(
            "127.0.0.1", 0, "127.0.0.1", srv.port, one_way_delay_s=0.005, rate_gbps=0.5
        ) as relay, TransferClient(
            "127.0.0.1", relay.port, b"k", connections=2, chunk_bytes=64 << 10,
            capacity_gbps=0.5,
        ) as client:  # fmt: skip
            layers = [LayerPayload(i, bytes([i]) * 200_000) for i in range(4)]
            res = await client.send("shaped", layers)
            tel = client.telemetry()
        assert res.verified and res.total_bytes == 800_000
        assert tel.capacity_gbps == 0.5 and tel.utilization >= 0
        assert tel.connections == 2 and tel.rtt_ms >= 0
        assert 0.0 <= tel.retransmit_rate <= 1.0

    asyncio.run(main())


def test_tcp_info_reads_rtt_and_counters_from_a_live_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        c.sendall(b"x" * 100_000)
        s.recv(100_000)
        info = read_tcp_info(c)
        c.close()
        s.close()
    if info is None:
        pytest.skip("TCP_INFO is not available on this platform")
    assert info.segments_out > 0 and info.retransmits >= 0 and info.rtt_ms >= 0
    assert read_tcp_info(c) is None  # closed socket


def test_link_monitor_goodput_ewma_tracks_acknowledged_bytes() -> None:
    mon = LinkMonitor("peer", tau_s=0.5, window_s=0.05)
    mon.on_busy(0.0)
    for k in range(1, 21):  # 125 MB/s = 1 Gbit/s for 1 s, in 50 ms windows
        mon.on_acked(6_250_000, now=k * 0.05)
    snap = mon.snapshot([], now=1.05, in_flight_bytes=7, queue_depth=3)
    assert snap.egress_gbps == pytest.approx(1.0, rel=0.02)
    assert snap.capacity_gbps == pytest.approx(snap.egress_gbps, rel=0.05)
    assert (snap.in_flight_bytes, snap.queue_depth) == (7, 3)
    assert snap.delivered_bytes == 20 * 6_250_000  # counted as acknowledged, not per transfer
    idle = mon.snapshot([], now=5.0)
    assert idle.egress_gbps < 0.01  # decays when the link goes idle
    assert idle.capacity_gbps == pytest.approx(1.0, rel=0.05)  # the best seen is remembered
    assert not idle.congested


def test_a_rate_change_re_times_bytes_booked_but_not_sent() -> None:
    """A link cut to 1 kB/s books 1 MB for ~1,000 s; restored to 1 GB/s, what is left of it goes
    at the restored rate (a real link drains its queue), not at the times booked during the cut."""
    bucket = TokenBucket(rate_gbps=8e-6, burst_bytes=0)  # 1 kB/s
    end = bucket.book(1_000_000, now=100.0)
    assert bucket.time_of(end) == pytest.approx(1100.0)
    bucket.set_rate(8.0, now=110.0)  # 10 s later, 10 kB have gone; the rest at 1 GB/s
    assert bucket.time_of(end) == pytest.approx(110.0 + 990_000 / 1e9)
    assert bucket.reserve(1_000_000, now=110.0) == pytest.approx(110.0 + 1.99e-3)


def test_a_waiting_sender_is_woken_by_a_rate_change() -> None:
    async def main() -> float:
        bucket = TokenBucket(rate_gbps=8e-6, burst_bytes=0)  # 1 kB/s: 1 MB would take 1,000 s
        end = bucket.book(1_000_000, time.monotonic())
        t0 = time.monotonic()
        waiter = asyncio.create_task(bucket.sleep_until_sent(end))
        await asyncio.sleep(0.05)
        bucket.set_rate(8.0)  # restored: the rest goes in ~1 ms
        await asyncio.wait_for(waiter, 5.0)
        return time.monotonic() - t0

    assert asyncio.run(main()) < 2.0
