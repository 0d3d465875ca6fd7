"""A cluster CA and per-identity certificates (the `cryptography` library; P-256 ECDSA keys).

A folder holds `ca.pem` (+ `ca.key` while certificates are still being issued) and, per identity,
`NAME.pem` / `NAME.key`. An identity is the certificate's name (CN and DNS SAN): a node name,
`router`, `wan` or `operator`. Private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prfaas.errors import UsageError

VALID_DAYS = 30
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def _write(path: Path, data: bytes, private: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if private:
        path.chmod(0o600)  # an existing file keeps its mode through os.open


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def init_ca(folder: Path, cluster: str = "prfaas") -> Path:
    """Write a new CA (ca.pem, ca.key) into `folder`; returns the certificate's path."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{cluster} cluster CA"))
        .issuer_name(_name(f"{cluster} cluster CA"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(folder / "ca.key", _key_bytes(key), private=True)
    _write(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), private=False)
    return folder / "ca.pem"


def issue(folder: Path, name: str, ips: tuple[str, ...] = ()) -> Path:
    """Issue NAME.pem / NAME.key in `folder`, signed by its CA; returns the certificate's path.
    `ips` become IP SANs too (etcd's own gateway dials its listen address and checks it)."""
    if not NAME_RE.match(name):
        raise UsageError(f"identity {name!r} must be a DNS label (a-z, 0-9, '-')")
    try:
        ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"no usable CA in {folder} (run `prfaas certs init`): {exc}") from None
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(name), *(x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips)]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(folder / f"{name}.key", _key_bytes(key), private=True)
    _write(folder / f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM), private=False)
    return folder / f"{name}.pem"


def issue_all(
    folder: Path, names: list[str], ips: dict[str, tuple[str, ...]] | None = None
) -> None:
    """A fresh CA and one certificate per name (`ips`: IP SANs per name), then the CA key is
    deleted (nothing more can be signed: a throwaway CA per `prfaas up` run)."""
    init_ca(folder)
    for name in names:
        issue(folder, name, (ips or {}).get(name, ()))
    (folder / "ca.key").unlink()
