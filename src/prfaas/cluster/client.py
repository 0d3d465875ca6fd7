"""Opening an etcd client from a URL (the only place that knows which client library is used).

aetcd opens plain gRPC channels only; `TlsClient` opens the same stubs over a TLS channel that
presents this process's cluster certificate and requires etcd to prove the identity `etcd`.
"""

from __future__ import annotations

from urllib.parse import urlparse

import aetcd
import grpc
from aetcd import rpc, watcher

from prfaas.errors import UsageError
from prfaas.security.tls import Pki

ETCD = "etcd"  # the identity etcd's server certificate names


class TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over `grpc.aio.secure_channel` with a client certificate."""

    def __init__(self, host: str, port: int, pki: Pki, timeout: int) -> None:
        super().__init__(host=host, port=port, timeout=timeout)
        self._credentials = grpc.ssl_channel_credentials(
            pki.ca.read_bytes(), pki.key.read_bytes(), pki.cert.read_bytes()
        )

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        options = [("grpc.ssl_target_name_override", ETCD)]
        self.channel = grpc.aio.secure_channel(
            f"{self._host}:{self._port}", self._credentials, options=options
        )
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()


async def connect(url: str, pki: Pki | None = None, timeout_s: float = 5.0) -> aetcd.Client:
    """An open client for `http://host:port`, or `https://host:port` with the cluster PKI."""
    parsed = urlparse(url)
    want = "https" if pki is not None else "http"
    if parsed.scheme not in ("http", "https") or not parsed.hostname or not parsed.port:
        raise UsageError(f"etcd URL must look like {want}://host:port, got {url!r}")
    if parsed.scheme != want:
        raise UsageError(
            f"etcd URL {url!r}: with a cluster PKI etcd must be https (client certificates), "
            "without one (insecure mode) http"
        )
    client: aetcd.Client
    if pki is not None:
        client = TlsClient(parsed.hostname, parsed.port, pki, int(timeout_s) or 1)
    else:
        client = aetcd.Client(host=parsed.hostname, port=parsed.port, timeout=int(timeout_s) or 1)
    await client.connect()
    return client
