"""The router's link monitor reads emulated transfer counters in the deployment's modelled units."""

from __future__ import annotations

from pathlib import Path

from approx import assert_close
from prfaas.deploy.config import load_deployment
from prfaas.router.bandwidth import BandwidthMonitor
from prfaas.worker.messages import LinkStats

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "paper-emulated.toml"


def test_bytes_in_flight_are_a_quantity_and_egress_a_rate() -> None:
    """payload_scale 1e-3, time_scale 2: 1 kB in flight is 1 MB modelled (not 0.5 MB, as when
    in-flight bytes were scaled like a rate), and 1 MB acknowledged in one wall second is 1 GB
    in two modelled seconds: 4 Gbit/s."""
    cfg = load_deployment(EXAMPLE)
    assert (cfg.engine.payload_scale, cfg.engine.time_scale) == (0.001, 2.0)
    mon = BandwidthMonitor(cfg)
    link = mon.links[("prfaas", "pd")]
    mon.report("prfaas-p0", "prfaas", {"pd": LinkStats(bytes_sent=0, in_flight_bytes=1_000)}, 10.0)
    assert_close(link.in_flight_bytes, 1_000_000, rel=1e-9)
    # Many short intervals at a steady rate: the EWMA converges to it.
    sent = 0
    for k in range(1, 201):
        sent += 100_000  # 0.1 MB emulated per 0.1 wall s = 1 MB per wall second
        stats = {"pd": LinkStats(bytes_sent=sent, in_flight_bytes=0)}
        mon.report("prfaas-p0", "prfaas", stats, 10.0 + 0.1 * k)
    assert_close(link.bytes_total, 20_000_000_000, rel=1e-9)  # 20 MB emulated = 20 GB modelled
    assert_close(link.egress_gbps, 4.0, rel=0.01)
    assert link.in_flight_bytes == 0
