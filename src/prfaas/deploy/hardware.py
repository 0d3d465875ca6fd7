"""Which prefill/decode profile an emulated node runs: from its hardware preset or given names."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prfaas.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from prfaas.deploy.config import NodeConfig
    from prfaas.planner.fields import Table
    from prfaas.profiles import DecodeProfile, PrefillProfile

# Default profile per hardware preset: the paper's measured H200 table and the H20 curves inferred
# from Table 6 (docs/paper-notes.md; provenance labels in prfaas.profiles.paper).
DEFAULT_PREFILL: dict[str, str] = {"h200": "paper-h200", "h20": "paper-h20-inferred"}
DEFAULT_DECODE: dict[str, str] = {"h20": "paper-h20-decode"}


def _decode_builders() -> dict[str, Callable[[], DecodeProfile]]:
    from prfaas.profiles import paper

    return {"paper-h20-decode": paper.h20_decode}


def prefill_profile_name(node: NodeConfig) -> str | None:
    return node.prefill_profile or DEFAULT_PREFILL.get(node.hardware.lower())


def decode_profile_name(node: NodeConfig) -> str | None:
    return node.decode_profile or DEFAULT_DECODE.get(node.hardware.lower())


def node_prefill_profile(node: NodeConfig) -> PrefillProfile | None:
    from prfaas.profiles import get_prefill_profile

    name = prefill_profile_name(node)
    return get_prefill_profile(name) if name else None


def node_decode_profile(node: NodeConfig) -> DecodeProfile | None:
    name = decode_profile_name(node)
    if name is None:
        return None
    builders = _decode_builders()
    if name not in builders:
        raise ConfigError(f"unknown decode profile {name!r}; choose one of: {', '.join(builders)}")
    return builders[name]()


def check_node_profiles(node: NodeConfig, cluster_role: str, t: Table) -> None:
    """An emulated node needs a prefill profile to prefill and a decode profile to decode; PD nodes
    may switch roles at run time, so they need both."""
    from prfaas.profiles import get_hardware, list_prefill_profiles

    try:
        get_hardware(node.hardware)
    except UsageError as exc:
        raise t.fail("hardware", f"is not usable: {exc}") from None
    needs_prefill = node.role == "prefill" or cluster_role == "pd"
    needs_decode = node.role == "decode" or cluster_role == "pd"
    pre = prefill_profile_name(node)
    if needs_prefill and pre is None:
        raise t.fail("prefill_profile", f"is needed: hardware {node.hardware} has no default")
    if pre is not None and pre not in list_prefill_profiles():
        valid = ", ".join(list_prefill_profiles())
        raise t.fail("prefill_profile", f"must be one of {valid}, got {pre!r}")
    dec = decode_profile_name(node)
    if needs_decode and dec is None:
        raise t.fail("decode_profile", f"is needed: hardware {node.hardware} has no default")
    if dec is not None and dec not in _decode_builders():
        valid = ", ".join(_decode_builders())
        raise t.fail("decode_profile", f"must be one of {valid}, got {dec!r}")
