"""The emulated engine keeps the profile's timing from each job's start: its own overheads (hashing,
emitting, late wake-ups) do not add to a prefill or shift the decode grid (as in the simulator)."""

from __future__ import annotations

import asyncio
import tomllib

import pytest

from live_support import EMULATED_TOML
from prfaas.cache.pool import HybridPrefixPool
from prfaas.deploy.config import parse_deployment
from prfaas.worker import emulated
from prfaas.worker.emulated import EmulatedDecoder, EmulatedEngine
from prfaas.worker.kvlink import Inbound
from prfaas.worker.messages import PrefillJob, Sampling, Target


class FakeClock:
    """A virtual monotonic clock: sleeping jumps to the deadline plus a wake-up lag."""

    def __init__(self, lag_s: float) -> None:
        self.now = 100.0
        self.lag_s = lag_s
        self.deadlines: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self.now = max(self.now, deadline) + self.lag_s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    c = FakeClock(lag_s=0.002)
    monkeypatch.setattr(emulated.time, "monotonic", c.monotonic)
    monkeypatch.setattr(emulated, "sleep_until", c.sleep_until)
    return c


def _engine() -> EmulatedEngine:
    cfg = parse_deployment(tomllib.loads(EMULATED_TOML))
    return EmulatedEngine(cfg.engine, cfg.node("prfaas-0"), cfg.block_tokens)


def test_prefill_layers_end_on_the_profile_grid_from_the_job_start(clock: FakeClock) -> None:
    engine = _engine()
    pool = engine.make_pool(1 << 30, lambda e: None)
    assert isinstance(pool, HybridPrefixPool)
    overhead = 0.003  # each emit costs 3 ms of this process's time

    def emit(layer: object) -> None:
        clock.now += overhead

    job = PrefillJob("r1", 0, list(range(2000)), Sampling(max_tokens=4), Target("pd-d0", "h", 1))
    t0 = clock.now
    stats = asyncio.run(engine.prefill(job, pool, emit))
    layers = engine.cfg.num_layers
    total = engine.prefill_time_s(2000)
    assert clock.deadlines == pytest.approx([t0 + (i + 1) * total / layers for i in range(layers)])
    # Only the last wake-up lag and the last two emits (its layer, the end) remain.
    assert stats.compute_s == pytest.approx(total + clock.lag_s + 2 * overhead)
    assert stats.compute_s < total + layers * overhead


def test_a_queued_job_starts_when_the_previous_one_ended_on_the_profile(clock: FakeClock) -> None:
    """A FIFO server: start = max(ready, previous end); this process's lag between jobs is not
    added to the queue (it would accumulate over a saturated node's jobs)."""
    engine = _engine()
    pool = engine.make_pool(1 << 30, lambda e: None)
    layers = engine.cfg.num_layers

    def job(n: int) -> PrefillJob:
        return PrefillJob(f"r{n}", 0, [n] * 1500, Sampling(max_tokens=4), Target("pd-d0", "h", 1))

    t_ready = clock.now
    asyncio.run(engine.prefill(job(1), pool, lambda _: None, t_ready))
    end_1 = clock.deadlines[-1]
    assert end_1 == pytest.approx(t_ready + engine.prefill_time_s(1500))
    clock.now += 0.007  # the next job (ready long ago) enters late
    asyncio.run(engine.prefill(job(2), pool, lambda _: None, t_ready + 0.001))
    step = engine.prefill_time_s(1500) / layers
    assert clock.deadlines[layers] == pytest.approx(end_1 + step)
    assert clock.deadlines[-1] == pytest.approx(end_1 + layers * step)
    clock.now += 5.0  # idle; a job ready now starts now
    t_idle = clock.now - 0.001
    asyncio.run(engine.prefill(job(3), pool, lambda _: None, t_idle))
    assert clock.deadlines[-1] == pytest.approx(t_idle + layers * step)


def _inbound() -> Inbound:
    return Inbound({"end": {"first": 65, "seed": 7, "tokens": 10, "bytes": 0}}, [], 0)


def test_decode_iterations_keep_a_fixed_grid_and_restart_it_after_idle(clock: FakeClock) -> None:
    dec = EmulatedDecoder(0.01, emulated.ByteTokenizer(), chunk=4)
    period = 0.04

    async def run() -> None:
        start = clock.now
        await dec.add("a", _inbound(), Sampling(max_tokens=9))
        await dec.step()
        clock.now += 0.015  # a slow iteration: the next deadline does not move
        await dec.step()  # "a" finishes here (1 + 2 x 4 tokens)
        assert clock.deadlines == pytest.approx([start + period, start + 2 * period])
        assert dec.active == 0
        clock.now += 1.0  # idle
        restart = clock.now
        await dec.add("b", _inbound(), Sampling(max_tokens=5))
        await dec.step()
        assert clock.deadlines[-1] == pytest.approx(restart + period)

    asyncio.run(run())


class GatedLink:
    """A KV link whose sends finish only when the test opens the gate."""

    host, port, fail_next_sends = "127.0.0.1", 1, 0

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.computed: list[str] = []  # keys whose last layer was handed to the link

    async def send(self, host, port, key, layers, stats, connections, tls_peer=None):  # type: ignore[no-untyped-def]
        n = 0
        async for _, bufs in layers:
            n += sum(len(b) for b in bufs)
        self.computed.append(key)
        await self.gate.wait()
        return n


def test_a_prefill_node_computes_the_next_job_while_the_last_kv_is_on_the_wire() -> None:
    from prfaas.worker.node import WorkerNode

    cfg = parse_deployment(tomllib.loads(EMULATED_TOML))
    node = cfg.node("pd-p0")
    engine = EmulatedEngine(cfg.engine, node, cfg.block_tokens)
    link = GatedLink()

    async def run() -> None:
        worker = WorkerNode(cfg, node, engine, link)  # type: ignore[arg-type]
        dst = cfg.node("pd-d0")
        target = Target(dst.name, dst.advertise, 1)

        def job(rid: str) -> PrefillJob:
            return PrefillJob(rid, 0, list(range(600)), Sampling(max_tokens=4), target)

        first = asyncio.create_task(worker.prefill(job("a")))
        second = asyncio.create_task(worker.prefill(job("b")))
        for _ in range(500):
            if len(link.computed) == 2:
                break
            await asyncio.sleep(0.01)
        # "b" computed although "a"'s KV has not been delivered (the simulator's prefill node).
        assert link.computed == ["a", "b"]
        assert not first.done()
        link.gate.set()
        await asyncio.gather(first, second)
        assert worker.prefill_running == 0 and not worker._prefill_lock.locked()
        await worker.http.aclose()

    asyncio.run(run())
