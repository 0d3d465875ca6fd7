"""TLS contexts from a cluster PKI folder, and the identity a peer's certificate names."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from prfaas.errors import UsageError

ROUTER, WAN, OPERATOR = "router", "wan", "operator"


@dataclass(frozen=True)
class Pki:
    """Where one process finds the CA and its own certificate (`folder/NAME.pem|key`)."""

    folder: Path
    name: str

    def __post_init__(self) -> None:
        for path in (self.ca, self.cert, self.key):
            if not path.exists():
                raise UsageError(f"PKI file {path} is missing (run `prfaas certs issue`)")

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def cert(self) -> Path:
        return self.folder / f"{self.name}.pem"

    @property
    def key(self) -> Path:
        return self.folder / f"{self.name}.key"

    @cached_property
    def server(self) -> ssl.SSLContext:
        """Accepts only clients with a certificate from the cluster CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.num_tickets = 0  # no session resumption: nothing to send after the handshake
        return ctx

    @cached_property
    def client(self) -> ssl.SSLContext:
        """Presents this identity; the server must prove the name the caller expects."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(self.ca)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def peer_name(ssl_object: Any) -> str | None:
    """The identity of a verified peer: its certificate's DNS SAN (None without a certificate)."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
    return names[0] if len(names) == 1 else None
