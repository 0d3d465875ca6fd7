"""Membership over etcd on a live deployment: a second router replica joins mid-run and converges
by replay, both replicas place requests and index exactly what the workers' pools hold, a frozen
worker's lease expires and comes back, and a role written to etcd drains, then switches."""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from live_support import EMULATED_TOML, LONG_PROMPT, SHORT_PROMPT, complete, state, write_config
from prfaas.deploy.supervisor import Deployment

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("etcd") is None,
                       reason="etcd not installed (apt-get install etcd-server)"),
]
NODES = ("prfaas-0", "pd-p0", "pd-d0")
TTL_S = 3  # the default lease (router.lease_s)


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(write_config(tmp_path_factory.mktemp("cluster"), EMULATED_TOML))
    d.start(timeout_s=120)
    try:
        yield d
    finally:
        d.stop()


def _second_router(dep: Deployment) -> tuple[str, str]:
    """Start another replica of the router (same file, same etcd); its (public, control) URLs."""
    if "router-b" not in dep.procs:
        dep._spawn("router-b", [*dep.spawn_args["router"], "--name", "router-b"])
    ready = dep._wait_ready("router-b", time.monotonic() + 60)
    return ready["url"], ready["control_url"]


def _get(dep: Deployment, base: str, path: str, sni: str) -> Any:
    with dep.operator_client() as client:
        resp = client.get(base + path, extensions={"sni_hostname": sni}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def _pools(dep: Deployment) -> dict[str, dict[str, bool]]:
    return {n: _get(dep, dep.node_urls[n], "/pool", n)["blocks"] for n in NODES}


def _index(dep: Deployment, control_url: str) -> dict[str, dict[str, bool]]:
    got: dict[str, dict[str, bool]] = _get(dep, control_url, "/internal/index", "router")
    return got


def _until(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `check()` held; fails the test after `timeout_s`."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s"
        time.sleep(0.05)
    return time.monotonic() - t0


def _run(urls: list[str], n: int, tag: str) -> None:
    for i in range(n):
        prompt = f"[{tag} {i}] " + (LONG_PROMPT if i % 2 else SHORT_PROMPT)
        resp = complete(urls[i % len(urls)], prompt)
        assert resp.status_code == 200, resp.text


def test_replicas_index_exactly_the_pools_and_a_late_one_replays(dep: Deployment) -> None:
    _run([dep.url], 12, "before")  # the second replica has not seen any of these events
    url_b, control_b = _second_router(dep)
    _until(lambda: _index(dep, control_b) == _pools(dep), 10.0)  # converged by replay
    summary = _get(dep, control_b, "/internal/state", "router")["cluster"]
    assert summary["replayed"] > 0 and summary["lost"] == 0
    assert len(summary["replicas"]) == 2 and summary["leader"]  # exactly one leader, named
    _run([dep.url, url_b], 12, "both")  # both replicas place requests
    for url in (dep.url, url_b):
        decisions = httpx.get(f"{url}/dashboard/state", timeout=10).json()["decisions"]
        assert any(d["request_id"] for d in decisions)
    pools = _pools(dep)
    assert any(pools.values())
    for control in (dep.control_url, control_b):
        _until(lambda c=control: _index(dep, c) == _pools(dep), 5.0)  # type: ignore[misc]
    leaders = [_get(dep, c, "/internal/state", "router")["cluster"]["is_leader"]
               for c in (dep.control_url, control_b)]
    assert sorted(leaders) == [False, True]


def test_a_frozen_worker_leaves_within_the_ttl_and_comes_back(dep: Deployment) -> None:
    def registered() -> bool:
        return bool(state(dep)["nodes"]["pd-p0"]["registered"])  # type: ignore[index]

    assert registered()
    dep.kill("pd-p0", signal.SIGSTOP)
    try:
        gone_s = _until(lambda: not registered(), TTL_S + 3.0)
    finally:
        dep.kill("pd-p0", signal.SIGCONT)
    assert gone_s <= TTL_S + 1.5  # the lease's TTL plus etcd's expiry tick
    back_s = _until(lambda: registered() and state(dep)["nodes"]["pd-p0"]["alive"], 10.0)  # type: ignore[index]
    print(f"SIGSTOP: gone after {gone_s:.2f} s; SIGCONT: back after {back_s:.2f} s")
    assert back_s <= TTL_S + 1.0  # the next keepalive finds the lease expired and joins again
    _until(lambda: _index(dep, dep.control_url) == _pools(dep), 5.0)  # its blocks replayed
    assert complete(dep.url, SHORT_PROMPT + " thawed").status_code == 200


def test_a_role_written_to_etcd_drains_then_switches(dep: Deployment) -> None:
    from prfaas.cluster.client import connect
    from prfaas.cluster.keys import role_key
    from prfaas.security.tls import Pki

    assert dep.pki_dir is not None
    pki = Pki(dep.pki_dir, "operator")

    async def assign(node: str, role: str) -> None:
        client = await connect(dep.etcd_url, pki)
        await client.put(role_key(dep.cfg.name, node), role.encode())

    def role_of(node: str) -> str:
        return str(state(dep)["nodes"][node]["role"])  # type: ignore[index]

    asyncio.run(assign("pd-p0", "decode"))
    _until(lambda: role_of("pd-p0") == "decode", 10.0)
    assert _get(dep, dep.node_urls["pd-p0"], "/health", "pd-p0")["role"] == "decode"
    asyncio.run(assign("pd-p0", "prefill"))
    _until(lambda: role_of("pd-p0") == "prefill", 10.0)
    assert complete(dep.url, SHORT_PROMPT + " after roles").status_code == 200


def test_no_listener_for_the_removed_heartbeat_route(dep: Deployment) -> None:
    resp = dep.control("POST", "/internal/heartbeat", json={})
    assert resp.status_code in (404, 405)
    assert Path(dep.run_dir / "etcd").exists()  # the embedded etcd lives in the run folder


def test_up_joins_an_existing_etcd_and_leaves_it_clean(tmp_path: Path) -> None:
    """`prfaas up --etcd URL`: nothing embedded; the nodes register there (plain etcd and ZMQ in
    insecure mode) and a clean stop revokes their leases: no record is left behind."""
    from prfaas.cluster.client import connect
    from prfaas.cluster.embedded import EmbeddedEtcd
    from prfaas.cluster.keys import nodes_prefix

    server = EmbeddedEtcd(tmp_path / "etcd")
    url = server.start()
    config = write_config(tmp_path, EMULATED_TOML + "\n[security]\ninsecure = true\n")

    async def registered() -> list[str]:
        client = await connect(url)
        got = await client.get_prefix(nodes_prefix("emulated-test"))
        return sorted(kv.key.decode().rsplit("/", 1)[1] for kv in got)

    try:
        d = Deployment(config, etcd_url=url)
        try:
            d.start(timeout_s=120)
            assert d.etcd is None and not (d.run_dir / "etcd").exists()
            assert asyncio.run(registered()) == sorted(NODES)
            assert complete(d.url, LONG_PROMPT + " joined").status_code == 200
        finally:
            d.stop()
        assert asyncio.run(registered()) == []
    finally:
        server.stop()
