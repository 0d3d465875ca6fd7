"""DES kernel ordering and the fluid link: fair sharing, pipelining, capacity changes."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from prfaas.sim.kernel import Kernel
from prfaas.sim.link import FluidLink


def test_kernel_orders_by_time_then_insertion_and_never_goes_back() -> None:
    k = Kernel()
    seen: list[tuple[float, str]] = []
    k.at(2.0, lambda a: seen.append((k.now, a)), "late")
    k.at(1.0, lambda a: seen.append((k.now, a)), "first")
    k.at(1.0, lambda a: seen.append((k.now, a)), "second")
    k.at(1.0, lambda _: k.at(0.5, lambda a: seen.append((k.now, a)), "past"), None)
    k.run()
    assert seen == [(1.0, "first"), (1.0, "second"), (1.0, "past"), (2.0, "late")]
    assert k.events == 5 and k.now_s() == 2.0


def test_kernel_run_until_leaves_later_events() -> None:
    k = Kernel()
    hits: list[float] = []
    for t in (1.0, 2.0, 3.0):
        k.at(t, hits.append, t)
    k.run(until_s=2.5)
    assert hits == [1.0, 2.0] and k.pending == 1


def _link(gbps: float = 8.0, rtt_ms: float = 0.0) -> tuple[Kernel, FluidLink, dict[str, float]]:
    k = Kernel()
    done: dict[str, float] = {}
    return k, FluidLink(k, "a", "b", gbps, rtt_ms), done


def _start(
    k: Kernel,
    link: FluidLink,
    done: dict[str, float],
    name: str,
    size: float,
    at: float = 0.0,
    p1: float | None = None,
) -> None:
    def go(_: object) -> None:
        link.start(
            size, k.now, k.now if p1 is None else p1, lambda n: done.setdefault(n, k.now), name
        )

    k.at(at, go)


def test_bulk_transfer_time_and_one_way_delay() -> None:
    k, link, done = _link(gbps=8.0, rtt_ms=20.0)  # 1 GB/s
    _start(k, link, done, "x", 2e9)
    k.run()
    assert done["x"] == pytest.approx(2.0 + 0.010)


def test_concurrent_transfers_share_fairly() -> None:
    k, link, done = _link()
    _start(k, link, done, "a", 1e9)
    _start(k, link, done, "b", 3e9)
    k.run()
    assert done["a"] == pytest.approx(2.0)  # half of 1 GB/s each until a finishes
    assert done["b"] == pytest.approx(4.0)  # then b alone: 4 GB total over 4 s


def test_pipelined_transfer_ends_with_production_when_uncongested() -> None:
    k, link, done = _link()
    _start(k, link, done, "kv", 1e9, at=0.0, p1=10.0)  # produced at 0.1 GB/s
    k.run()
    assert done["kv"] == pytest.approx(10.0)
    assert link.sent_bytes == pytest.approx(1e9)


def test_congested_pipelined_flows_fall_behind_then_catch_up() -> None:
    k, link, done = _link(gbps=8.0)  # 1 GB/s
    for i in range(3):  # each produces 0.5 GB/s for 4 s: 1.5 GB/s offered
        _start(k, link, done, f"f{i}", 2e9, at=0.0, p1=4.0)
    k.run()
    for i in range(3):
        assert done[f"f{i}"] == pytest.approx(6.0)  # 6 GB at 1 GB/s


def test_capacity_change_mid_transfer() -> None:
    k, link, done = _link(gbps=8.0)
    _start(k, link, done, "x", 2e9)
    k.at(1.0, lambda _: link.set_factor(0.1))
    k.run()
    assert done["x"] == pytest.approx(1.0 + 1e9 / 1e8)


# A slow producer once finished early by the link's byte slack (found by hypothesis).
@example([(1.7971494706825266, 1e6, 0.7890625), (0.035553707814912634, 1e6, 2.55078125)])
@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 5), st.floats(1e6, 5e9), st.floats(0, 3)), min_size=1, max_size=8
    )
)
def test_every_transfer_completes_no_faster_than_the_link(
    flows: list[tuple[float, float, float]],
) -> None:
    k, link, done = _link(gbps=8.0)
    for i, (start, size, produce) in enumerate(flows):
        _start(k, link, done, str(i), size, at=start, p1=start + produce)
    k.run()
    assert len(done) == len(flows)
    first = min(s for s, _, _ in flows)
    assert max(done.values()) >= first + sum(sz for _, sz, _ in flows) / 1e9 - 1e-6
    for i, (start, size, produce) in enumerate(flows):
        assert done[str(i)] >= start + max(produce, size / 1e9) - 1e-6
    assert link.sent_bytes == pytest.approx(sum(sz for _, sz, _ in flows), rel=1e-6)
