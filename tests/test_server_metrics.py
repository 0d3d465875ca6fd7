"""/metrics: a private registry, parseable exposition, edge and router metrics with values."""

from __future__ import annotations

import httpx
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families

from prfaas.server import FakeBackend, ServerMetrics, ServerThread, create_app


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_endpoint_reports_edge_and_router_metrics() -> None:
    metrics = ServerMetrics()
    metrics.set_queue("pd", "pd-p0", 3, tokens=4096)
    metrics.set_node_role("pd", "pd-p0", "prefill")
    metrics.set_offload_fraction(0.25)
    metrics.set_threshold(19400)
    metrics.set_link("prfaas->pd", egress_gbps=0.4, capacity_gbps=1.0)
    metrics.observe_transfer("prfaas->pd", 0.12, 1_000_000)
    metrics.observe_prefix("pd", hit_tokens=300, prompt_tokens=1000)
    metrics.observe_prefix("pd", hit_tokens=500, prompt_tokens=1000)
    metrics.count_route("prfaas")
    app = create_app(FakeBackend(), model_name="m", max_context_tokens=512, metrics=metrics)
    with ServerThread(app) as srv:
        for stream in (False, True):
            r = httpx.post(
                f"{srv.url}/v1/completions",
                json={"model": "m", "prompt": "a b", "max_tokens": 4, "stream": stream},
            )
            assert r.status_code == 200
        assert httpx.post(f"{srv.url}/v1/completions", json={"model": "x", "prompt": "a"}).is_error
        assert httpx.post(f"{srv.url}/v1/chat/completions", json={"model": "m"}).is_error
        resp = httpx.get(f"{srv.url}/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    got = samples(resp.text)
    assert got[("prfaas_requests_total", (("endpoint", "completions"), ("status", "200")))] == 2
    assert got[("prfaas_requests_total", (("endpoint", "completions"), ("status", "404")))] == 1
    assert got[("prfaas_requests_total", (("endpoint", "chat"), ("status", "400")))] == 1
    assert got[("prfaas_ttft_seconds_count", ())] == 2
    assert got[("prfaas_tpot_seconds_count", ())] == 2
    assert got[("prfaas_e2e_seconds_count", ())] == 2
    assert got[("prfaas_requests_in_flight", ())] == 0
    assert got[("prfaas_queue_requests", (("cluster", "pd"), ("node", "pd-p0")))] == 3
    assert got[("prfaas_queue_tokens", (("cluster", "pd"), ("node", "pd-p0")))] == 4096
    role = (("cluster", "pd"), ("node", "pd-p0"))
    assert got[("prfaas_node_role", (*role, ("role", "prefill")))] == 1
    assert got[("prfaas_node_role", (*role, ("role", "decode")))] == 0
    assert got[("prfaas_offload_fraction", ())] == 0.25
    assert got[("prfaas_threshold_tokens", ())] == 19400
    assert got[("prfaas_egress_gbps", (("link", "prfaas->pd"),))] == 0.4
    assert got[("prfaas_link_capacity_gbps", (("link", "prfaas->pd"),))] == 1.0
    assert got[("prfaas_transfer_seconds_count", (("link", "prfaas->pd"),))] == 1
    assert got[("prfaas_transfer_bytes_total", (("link", "prfaas->pd"),))] == 1_000_000
    assert got[("prfaas_prefix_hit_ratio", (("cluster", "pd"),))] == 0.4
    assert got[("prfaas_routed_requests_total", (("cluster", "prfaas"),))] == 1


def test_registries_are_private() -> None:
    a, b = ServerMetrics(), ServerMetrics()  # the global registry would reject the second
    a.observe_ttft(0.1)
    assert samples(a.exposition()[0].decode())[("prfaas_ttft_seconds_count", ())] == 1
    assert samples(b.exposition()[0].decode())[("prfaas_ttft_seconds_count", ())] == 0
    global_names = {m.name for m in prometheus_client.REGISTRY.collect()}
    assert "prfaas_ttft_seconds" not in global_names
