"""Security building blocks without a deployment: config, certificates, keys, checks, scrubbing."""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path

import pytest
from cryptography import x509

from live_support import EMULATED_TOML
from prfaas.deploy.config import parse_deployment
from prfaas.errors import ConfigError, UsageError
from prfaas.router.control import checked_params
from prfaas.security.certs import init_ca, issue, issue_all
from prfaas.security.tls import Pki, peer_name
from prfaas.server.auth import ApiKeys


def _cfg(extra: str) -> object:
    return parse_deployment(tomllib.loads(EMULATED_TOML + extra), source="t.toml")


def test_security_and_limits_defaults_are_secure() -> None:
    cfg = _cfg("")
    assert not cfg.security.insecure and cfg.security.kv_tls == "cross"  # type: ignore[attr-defined]
    assert cfg.limits.max_tokens == 4096 and cfg.limits.max_body_bytes == 4 << 20  # type: ignore[attr-defined]


def test_the_queue_wait_bound_defaults_to_the_recovery_target() -> None:
    """A 3x burst's backlog clears within recovery_s (10 s) at 60% load: a 4 s bound by default;
    an explicit max_queue_wait_s wins; recovery_s = 0 with no max_queue_wait_s turns it off."""
    from prfaas.router.admission import Admitter

    def bound(extra: str) -> float:
        return Admitter(_cfg(extra), 2.0, lambda *_: None).max_wait_s  # type: ignore[arg-type]

    assert bound("") == pytest.approx(4.0)
    assert bound("[limits]\nrecovery_s = 5.0\nrecovery_load = 0.5\n") == pytest.approx(2.5)
    assert bound("[limits]\nmax_queue_wait_s = 7.0\n") == pytest.approx(7.0)
    assert bound("[limits]\nrecovery_s = 0\n") == 0.0


@pytest.mark.parametrize(
    ("extra", "field"),
    [('[security]\nkv_tls = "sometimes"\n', "security.kv_tls"),
     ('[security]\ninsecure = "yes"\n', "security.insecure"),
     ('[[security.api_keys]]\nname = "a"\nkey = "short"\n', "security.api_keys[0].key"),
     ('[[security.api_keys]]\nname = "a"\nkey = "0123456789abcdefg"\n'
      '[[security.api_keys]]\nname = "b"\nkey = "0123456789abcdefg"\n', "security.api_keys"),
     ("[limits]\nmax_tokens = 0\n", "limits.max_tokens"),
     ("[limits]\nmax_body = 5\n", "limits.max_body"),
     ("[limits]\nrecovery_load = 1.0\n", "limits.recovery_load"),
     ('[security]\ntypo = 1\n', "security.typo")],
)
def test_bad_security_fields_name_the_field(extra: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        _cfg(extra)


def test_binding_everything_needs_an_advertised_address() -> None:
    text = EMULATED_TOML.replace("[router]\n", '[router]\ncontrol_host = "0.0.0.0"\n')
    with pytest.raises(ConfigError, match=r"router\.advertise"):
        parse_deployment(tomllib.loads(text), source="t.toml")
    bound = 'control_host = "0.0.0.0"'
    text = text.replace(bound, bound + '\nadvertise = "10.9.9.9"')
    cfg = parse_deployment(tomllib.loads(text), source="t.toml")
    assert cfg.router.advertise == "10.9.9.9"


def test_issue_all_writes_private_keys_and_forgets_the_ca_key(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    issue_all(folder, ["router", "pd-d0"])
    assert not (folder / "ca.key").exists()  # nothing more can be signed
    assert (folder.stat().st_mode & 0o777) == 0o700
    for name in ("router", "pd-d0"):
        assert ((folder / f"{name}.key").stat().st_mode & 0o777) == 0o600
        cert = x509.load_pem_x509_certificate((folder / f"{name}.pem").read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
    with pytest.raises(UsageError, match="no usable CA"):
        issue(folder, "late")


def test_bad_identity_names_are_refused(tmp_path: Path) -> None:
    init_ca(tmp_path)
    for name in ("Bad_Name", "a" * 70, "-x", ""):
        with pytest.raises(UsageError):
            issue(tmp_path, name)


def test_peer_name_is_the_single_dns_san(tmp_path: Path) -> None:
    issue_all(tmp_path / "pki", ["a", "b"])

    class Peer:
        def __init__(self, cert: dict[str, object]) -> None:
            self.cert = cert

        def getpeercert(self) -> dict[str, object]:
            return self.cert

    assert peer_name(Peer({"subjectAltName": (("DNS", "a"),)})) == "a"
    assert peer_name(Peer({"subjectAltName": (("DNS", "a"), ("DNS", "b"))})) is None
    assert peer_name(Peer({})) is None and peer_name(None) is None
    ctx = Pki(tmp_path / "pki", "a").client
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert Pki(tmp_path / "pki", "b").server.verify_mode == ssl.CERT_REQUIRED


def test_api_keys_come_from_the_file_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg('[[security.api_keys]]\nname = "alice"\nkey = "alice-key-0123456789"\n')
    monkeypatch.setenv("PRFAAS_API_KEY", "env-key-0123456789")
    keys = ApiKeys.from_config(cfg)

    def scope(auth: str) -> dict[str, object]:
        return {"headers": [(b"authorization", auth.encode())], "client": ("1.2.3.4", 5)}

    assert keys.client(scope("Bearer alice-key-0123456789")) == "alice"
    assert keys.client(scope("bearer env-key-0123456789")) == "default"
    assert keys.client(scope("Bearer nope")) is None
    assert keys.client(scope("Basic alice-key-0123456789")) is None
    assert keys.client({"headers": []}) is None
    assert ApiKeys({}).client(scope("")) == "anonymous@1.2.3.4"


@pytest.mark.parametrize(
    "params",
    [{"threshold_by_gbps": [[1, "x"]]}, {"threshold_tokens": -1}, {"threshold_tokens": "9"},
     {"unknown": 1}, {"raise_util": 0.1, "scarce_util": 0.5},
     {"threshold_by_gbps": [[2, 1], [1, 1]]}],
)
def test_policy_parameters_are_type_checked(params: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        checked_params(params)


def test_good_policy_parameters_pass_as_typed_values() -> None:
    got = checked_params({"threshold_tokens": 100, "threshold_by_gbps": [[1.0, 10], [5, 20]]})
    assert got == {"threshold_tokens": 100, "threshold_by_gbps": ((1.0, 10), (5.0, 20))}
