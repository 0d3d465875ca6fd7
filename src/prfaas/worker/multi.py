"""Several worker nodes in one process (`prfaas worker --node A --node B ...`): a host with many
small emulated nodes, and the fleet benchmarks. One event loop and one ZMQ context; every node
keeps its own listeners, certificate identity, etcd lease and record, so the cluster cannot tell
it from a node in a process of its own (except that they die together)."""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from prfaas.deploy.config import DeploymentConfig
from prfaas.security.asgi import make_server, serve_many
from prfaas.security.tls import Pki
from prfaas.worker.app import StartedNode, start_node, write_ready

START_CONCURRENCY = 4  # nodes registering at once: TLS handshakes and grants share the CPU


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one: each node holds about ten descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def run_workers(
    cfg: DeploymentConfig,
    names: list[str],
    etcd_url: str,
    secret: bytes,
    ready_file: Path | None,
    fault_hooks: bool,
    pkis: dict[str, Pki | None],
) -> None:
    """Start every node (a few at a time), publish their addresses, serve until stopped."""
    from prfaas.worker.cluster_link import ProcessZmq

    raise_fd_limit()
    shared = ProcessZmq()
    started: list[StartedNode] = []
    gate = asyncio.Semaphore(START_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            started.append(
                await start_node(cfg, name, etcd_url, secret, fault_hooks, pkis[name], shared)
            )

    try:
        await asyncio.gather(*(one(n) for n in names))
        write_ready(ready_file, {"nodes": {s.worker.name: s.ready() for s in started}})
        servers = [
            (make_server(s.app(), s.pki.server if s.pki is not None else None), s.sock)
            for s in started
        ]
        await serve_many(servers)
    finally:
        await asyncio.gather(*(s.close() for s in started), return_exceptions=True)
        await shared.close()
