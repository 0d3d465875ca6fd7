"""Schemathesis against every control listener of a live deployment, over mutual TLS with a
valid client certificate (the operator's; the router's for worker jobs; a node's for /push):
whatever the body, never a 5xx. (Nodes join through etcd: there is no heartbeat route.)"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from requests.adapters import HTTPAdapter

from conftest import Honest
from prfaas.deploy.supervisor import Deployment
from prfaas.router.control import PolicyChange, RoleRequest
from prfaas.security.openapi import openapi
from prfaas.security.tls import Pki
from prfaas.worker.messages import FaultSpec, PrefillJob, PushJob
from prfaas.worker.wan import RelayRequest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
pytestmark = pytest.mark.slow

# (listener, identity presented, routes). /decode waits for its KV by design (up to wait_s), so
# it is fuzzed only through the malformed-body tests of test_security_control.py.
LISTENERS: dict[str, tuple[str, str, list[Any]]] = {
    "router-operator": ("router", "operator", [
        ("/internal/policy", "POST", PolicyChange), ("/internal/role", "POST", RoleRequest),
        ("/internal/state", "GET", None), ("/internal/decisions", "GET", None),
        ("/internal/health", "GET", None)]),
    "worker-router": ("pd-p0", "router", [
        ("/prefill", "POST", PrefillJob),
        ("/fault", "POST", FaultSpec), ("/health", "GET", None)]),
    "worker-node": ("prfaas-0", "pd-p0", [("/push", "POST", PushJob)]),
    "wan-router": ("wan", "router", [("/relay", "POST", RelayRequest), ("/health", "GET", None)]),
}


class _Tls(HTTPAdapter):
    """requests over our client context, checking the server's certificate name."""

    def __init__(self, pki: Pki, server: str) -> None:
        self.pki, self.server = pki, server
        super().__init__()

    def init_poolmanager(self, *args: Any, **kw: Any) -> None:
        ctx = self.pki.client
        kw.update(ssl_context=ctx, server_hostname=self.server, assert_hostname=self.server)
        super().init_poolmanager(*args, **kw)


def _session(dep: Deployment, identity: str, server: str) -> requests.Session:
    assert dep.pki_dir is not None
    session = requests.Session()
    session.mount("https://", _Tls(Pki(dep.pki_dir, identity), server))
    return session


@pytest.mark.parametrize("listener", sorted(LISTENERS))
def test_control_listeners_never_answer_5xx(dep: Deployment, listener: str) -> None:
    server, identity, routes = LISTENERS[listener]
    schema = schemathesis.openapi.from_dict(openapi(listener, routes))
    base = {"router": dep.control_url, "wan": dep.wan_url}.get(server) or dep.node_urls[server]
    session = _session(dep, identity, server)
    seen: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: Any) -> None:
            response = case.call(base_url=base, session=session, timeout=30)
            seen.append(response.status_code)
            assert response.status_code < 500, (case.as_curl_command(), response.text[:300])

        fuzz()
    assert len(seen) >= len(routes), seen


def test_the_deployment_still_serves_after_the_fuzzing(dep: Deployment, honest: Honest) -> None:
    """The honest fixture asserts every request in this window succeeds."""
    import time

    time.sleep(1.0)
