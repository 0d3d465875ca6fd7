"""Opening an etcd client from a URL (the only place that knows which client library is used)."""

from __future__ import annotations

from urllib.parse import urlparse

import aetcd

from prfaas.errors import UsageError


async def connect(url: str, timeout_s: float = 5.0) -> aetcd.Client:
    """An open client for `http://host:port`. TLS endpoints are refused with a clear message:
    the client library used here (aetcd) speaks plain gRPC only."""
    parsed = urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname or not parsed.port:
        raise UsageError(f"etcd URL must look like http://host:port, got {url!r}")
    client = aetcd.Client(host=parsed.hostname, port=parsed.port, timeout=int(timeout_s) or 1)
    await client.connect()
    return client
