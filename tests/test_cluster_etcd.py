"""Cluster state on a real etcd: leased registration, watches, expiry on freeze, leader election."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prfaas.cluster.client import connect
from prfaas.cluster.embedded import EmbeddedEtcd
from prfaas.cluster.keys import NodeMeta, node_key
from prfaas.cluster.leader import LeaderElection
from prfaas.cluster.registry import Registration
from prfaas.cluster.watch import NodeWatch
from prfaas.errors import UsageError

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None, reason="etcd not installed (apt-get install etcd-server)"
)
DEP = "test"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedEtcd(tmp_path_factory.mktemp("etcd"))
    try:
        yield server.start()
    finally:
        server.stop()


def _meta(name: str, role: str = "prefill") -> NodeMeta:
    return NodeMeta(name=name, cluster="pd", role=role, advertise=f"10.0.0.1:{len(name)}")  # type: ignore[arg-type]


def test_nodes_appear_and_a_frozen_node_expires_within_its_ttl(etcd: str) -> None:
    async def run() -> None:
        client = await connect(etcd)
        watch = NodeWatch(client, DEP)
        await watch.start()
        regs = [Registration(client, DEP, _meta(f"n{i}"), ttl_s=2) for i in range(3)]
        t0 = time.monotonic()
        for reg in regs:
            await reg.start()
        assert await watch.wait_for(lambda n: len(n) == 3, 3.0)
        assert time.monotonic() - t0 < 3.0
        assert watch.nodes["n1"].advertise == "10.0.0.1:2"
        await asyncio.sleep(2.5)  # past one TTL: the keepalives hold the others
        assert set(watch.nodes) == {"n0", "n1", "n2"} and regs[0].refreshes >= 2
        regs[0].pause()  # what SIGSTOP looks like from etcd: no more keepalives
        t1 = time.monotonic()
        assert await watch.wait_for(lambda n: "n0" not in n, 5.0)
        assert time.monotonic() - t1 <= 2.0 + 1.5  # the TTL, plus etcd's expiry tick
        await regs[1].close()  # a clean exit revokes: gone at once
        assert await watch.wait_for(lambda n: "n1" not in n, 1.0)
        await regs[0].start()  # SIGCONT: a new lease, back in
        assert await watch.wait_for(lambda n: "n0" in n, 2.0)
        for reg in regs:
            await reg.close()
        await watch.close()

    asyncio.run(run())


def test_a_late_watcher_starts_from_a_snapshot_and_ignores_garbage(etcd: str) -> None:
    async def run() -> None:
        client = await connect(etcd)
        reg = Registration(client, "late", _meta("d0", "decode"), ttl_s=2)
        await reg.start()
        await client.put(node_key("late", "junk"), b"not json")
        watch = NodeWatch(client, "late")
        await watch.start()
        assert set(watch.nodes) == {"d0"} and watch.ignored == 1
        await reg.close()
        assert await watch.wait_for(lambda n: not n, 1.0)
        await watch.close()

    asyncio.run(run())


def test_exactly_one_leader_and_failover(etcd: str) -> None:
    async def run() -> None:
        client = await connect(etcd)
        a = LeaderElection(client, DEP, "rebalancer", "router-a", ttl_s=2)
        b = LeaderElection(client, DEP, "rebalancer", "router-b", ttl_s=2)
        await a.start()
        await asyncio.sleep(0.3)
        await b.start()
        await asyncio.sleep(0.5)
        assert (a.is_leader, b.is_leader) == (True, False) and b.leader == "router-a"
        await a.resign()
        for _ in range(40):
            if b.is_leader:
                break
            await asyncio.sleep(0.1)
        assert b.is_leader and not a.is_leader
        await b.resign()

    asyncio.run(run())


def test_a_frozen_registration_rejoins_by_itself_when_it_thaws(etcd: str) -> None:
    async def run() -> None:
        client = await connect(etcd)
        watch = NodeWatch(client, "thaw")
        await watch.start()
        reg = Registration(client, "thaw", _meta("p0"), ttl_s=2)
        await reg.start()
        assert await watch.wait_for(lambda n: "p0" in n, 2.0)
        reg.pause()  # SIGSTOP
        assert await watch.wait_for(lambda n: "p0" not in n, 4.0)
        reg.resume()  # SIGCONT: the next refresh finds the lease expired and joins again
        assert await watch.wait_for(lambda n: "p0" in n, 3.0)
        assert reg.rejoins == 1
        await reg.close()
        await watch.close()

    asyncio.run(run())


def test_etcd_with_a_pki_admits_only_cluster_certificates(tmp_path: Path) -> None:
    import aetcd

    from prfaas.cluster.client import TlsClient
    from prfaas.security.certs import init_ca, issue, issue_all
    from prfaas.security.tls import Pki

    issue_all(tmp_path / "pki", ["etcd", "router"], {"etcd": ("127.0.0.1",)})
    init_ca(tmp_path / "rogue")
    issue(tmp_path / "rogue", "router")
    server = EmbeddedEtcd(tmp_path, tls=Pki(tmp_path / "pki", "etcd"))
    url = server.start()
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])

    async def put(client: object) -> None:
        async with asyncio.timeout(8):
            await client.connect()  # type: ignore[attr-defined]
            await client.put(b"/k", b"v")  # type: ignore[attr-defined]

    async def honest() -> bytes:
        client = await connect(url, Pki(tmp_path / "pki", "router"))
        await client.put(b"/k", b"v")
        return bytes((await client.get(b"/k")).value)

    try:
        assert url.startswith("https://")
        assert asyncio.run(honest()) == b"v"
        for bad in (lambda: TlsClient(host, port, Pki(tmp_path / "rogue", "router"), 3),
                    lambda: aetcd.Client(host=host, port=port, timeout=3)):
            with pytest.raises(Exception):  # noqa: B017 - refused in the handshake
                asyncio.run(put(bad()))
        with pytest.raises(UsageError):  # https needs the PKI; http is refused with one
            asyncio.run(connect(url.replace("https", "http"), Pki(tmp_path / "pki", "router")))
    finally:
        server.stop()


def test_watches_and_leases_survive_an_etcd_restart(tmp_path: Path) -> None:
    """etcd killed and started again on its data folder and ports (what the supervisor does):
    leases live on, watches re-join from a fresh snapshot and report what changed meanwhile."""
    import subprocess

    server = EmbeddedEtcd(tmp_path)
    url = server.start()

    async def run() -> None:
        client = await connect(url)
        watch = NodeWatch(client, "rs")
        await watch.start()
        keep = Registration(client, "rs", _meta("keep"), ttl_s=3)
        gone = Registration(client, "rs", _meta("gone"), ttl_s=3)
        await keep.start()
        await gone.start()
        assert await watch.wait_for(lambda n: {"keep", "gone"} <= set(n), 2.0)
        assert server.proc is not None
        args = server.proc.args
        server.proc.kill()
        server.proc.wait()
        server.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        for _ in range(100):
            if server.healthy():
                break
            await asyncio.sleep(0.1)
        await gone.close()  # a change the broken watch could not see
        late = Registration(client, "rs", _meta("late"), ttl_s=3)
        await late.start()
        assert await watch.wait_for(lambda n: set(n) == {"keep", "late"}, 5.0)
        assert watch.reconnects >= 1
        await asyncio.sleep(3.5)  # past the TTL: the keepalives reach the restarted etcd
        assert set(watch.nodes) == {"keep", "late"}
        for reg in (keep, late):
            await reg.close()
        await watch.close()

    try:
        asyncio.run(run())
    finally:
        server.stop()


def test_bad_etcd_urls_are_usage_errors() -> None:
    for url in ("localhost:2379", "https://etcd:2379", "http://etcd"):
        with pytest.raises(UsageError):
            asyncio.run(connect(url))


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prfaas.cluster import embedded

    monkeypatch.setattr(embedded.shutil, "which", lambda _: None)
    with pytest.raises(embedded.EtcdError, match="apt-get install etcd-server"):
        EmbeddedEtcd(tmp_path).start()
