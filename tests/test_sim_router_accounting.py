"""The simulator's mirror of a live deployment counts a prefill job as the live router does: from
routing until its KV reached the decode node (the prefill reply), not only until compute ends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from prfaas.sim.kernel import Kernel
from prfaas.sim.nodes import PrefillNode


class FakeSim:
    def __init__(self, routed: bool) -> None:
        self.kernel = Kernel()
        self.setup = SimpleNamespace(routed_queue_tokens=routed)
        self.finished: list[Any] = []

    def prefill_started(self, job: Any, start: float) -> float:
        return 1.0

    def prefill_pipelined(self, job: Any, start: float, service: float) -> None:
        pass

    def prefill_finished(self, job: Any) -> None:
        self.finished.append(job)


@pytest.mark.parametrize("routed", [True, False])
def test_a_finished_prefill_stays_queued_until_its_kv_is_delivered(routed: bool) -> None:
    sim = FakeSim(routed)
    node = PrefillNode(sim, "p0", "pd", lambda n: 0.0)  # type: ignore[arg-type]
    first, second = SimpleNamespace(inc=300), SimpleNamespace(inc=200)
    node.submit(first)  # type: ignore[arg-type]
    node.submit(second)  # type: ignore[arg-type]
    assert (node.view().queue_len, node.view().running, node.view().queued_tokens) == (1, 1, 500)
    sim.kernel.run(until_s=1.5)  # the first computed, its KV still on the wire; the second runs
    assert sim.finished == [first]
    v = node.view()
    if routed:  # the router: two jobs in flight, one counted as running, 500 tokens
        assert (v.queue_len, v.running, v.queued_tokens) == (1, 1, 500)
        node.delivered(first)  # type: ignore[arg-type]
        v = node.view()
    assert (v.queue_len, v.running, v.queued_tokens) == (0, 1, 200)
    sim.kernel.run()
    if routed:
        v = node.view()
        assert (v.queue_len, v.running, v.queued_tokens) == (0, 1, 200)  # the tail alone
        node.delivered(second)  # type: ignore[arg-type]
    v = node.view()
    assert (v.queue_len, v.running, v.queued_tokens) == (0, 0, 0)
