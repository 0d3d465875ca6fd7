"""The fixture comparison helper: tolerant on the last bits of floats, exact on everything else."""

from __future__ import annotations

import pytest

from approx import assert_close, close_mismatch
from prfaas.core.view import LinkView


def _link(egress: float, rtt: float = 20.0, in_flight: int = 5) -> LinkView:
    return LinkView("a", "b", 10.0, egress, in_flight, rtt, 0.0)


def test_one_ulp_apart_is_equal() -> None:
    # The case seen on another CPU: the recorded float and the recomputed one differ by 1 ULP.
    assert_close(_link(1.193945175340361), _link(1.1939451753403614))


def test_real_differences_are_reported_with_their_path() -> None:
    assert close_mismatch(_link(1.0), _link(1.001)) == "$.egress_gbps: 1.0 != 1.001 (rel tol 1e-09)"
    other = close_mismatch(_link(1.0, in_flight=5), _link(1.0, in_flight=6))
    assert other is not None and "in_flight_bytes" in other
    assert close_mismatch({"a": [1, 2]}, {"a": [1, 2, 3]}) == "$['a']: length 2 != 3"
    assert close_mismatch({"reason": "x"}, {"reason": "y"}) is not None
    assert close_mismatch(True, 1) is not None  # a bool never equals an int here
    with pytest.raises(AssertionError):
        assert_close(_link(2.0), _link(2.0 * (1 + 1e-8)))
