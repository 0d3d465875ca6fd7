"""The connector's pure pieces: kv_transfer_params contract, extra config, block alignment."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NULL_BLOCK_ID = 0  # vLLM's placeholder block (align-mode Mamba groups): never carries state
_LAYER_NO = re.compile(r"\.(\d+)\.")


class ConnectorConfigError(ValueError):
    """The connector's kv_connector_extra_config is unusable."""


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """What `kv_connector_extra_config` holds (peer addresses come only from here)."""

    engine_id: str
    secret: bytes
    listen: tuple[str, int] | None = None  # decode side: where pushed KV lands
    peers: Mapping[str, tuple[str, int]] = field(default_factory=dict)  # engine id -> address
    connections: int = 4
    load_timeout_s: float = 30.0
    send_timeout_s: float = 60.0
    stats_path: str | None = None
    # The run's PKI folder (ca.pem, ENGINE_ID.pem/.key): with it the KV channel is TLS 1.3 with
    # mutual certificates, the receiver refuses plain connections, and a sender checks that the
    # receiver's certificate names the decode engine it meant.
    pki: str | None = None
    # Push each layer while the prefill's forward still runs (save_kv_layer), rather than all
    # layers after the request finished; a request's kv_transfer_params may override it.
    layerwise: bool = True


def _addr(text: object, what: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConnectorConfigError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def parse_config(extra: Mapping[str, Any], engine_id: str) -> ConnectorConfig:
    """Validate the extra config; the secret is read from `secret_file` (never a command line)."""
    secret_file = extra.get("secret_file")
    if not secret_file:
        raise ConnectorConfigError("kv_connector_extra_config.secret_file is required")
    try:
        secret = Path(str(secret_file)).read_bytes().strip()
    except OSError as exc:
        raise ConnectorConfigError(f"cannot read secret_file {secret_file}: {exc}") from None
    if len(secret) < 16:
        raise ConnectorConfigError("the transfer secret must be at least 16 bytes")
    listen = _addr(extra["listen"], "listen") if extra.get("listen") else None
    engine = str(extra.get("engine_id") or engine_id)
    pki = str(extra["pki_dir"]) if extra.get("pki_dir") else None
    if pki is not None:
        for part in ("ca", engine):
            if not (Path(pki) / f"{part}.pem").exists():
                raise ConnectorConfigError(f"pki_dir {pki} has no {part}.pem")
    peers = {str(k): _addr(v, f"peers.{k}") for k, v in dict(extra.get("peers", {})).items()}
    return ConnectorConfig(
        engine_id=engine,
        secret=secret,
        listen=listen,
        peers=peers,
        connections=int(extra.get("connections", 4)),
        load_timeout_s=float(extra.get("load_timeout_s", 30.0)),
        send_timeout_s=float(extra.get("send_timeout_s", 60.0)),
        stats_path=str(extra["stats_path"]) if extra.get("stats_path") else None,
        pki=pki,
        layerwise=bool(extra.get("layerwise", True)),
    )


def wants_remote_decode(params: Mapping[str, Any] | None) -> bool:
    """Prefill side: this request's KV goes to another instance (under its transfer_id)."""
    return bool(params and params.get("do_remote_decode") and params.get("transfer_id"))


def wants_remote_prefill(params: Mapping[str, Any] | None) -> bool:
    """Decode side: this request's prompt KV arrives from a prefill instance."""
    return bool(params and params.get("do_remote_prefill") and params.get("transfer_id"))


def wants_layerwise(params: Mapping[str, Any] | None, default: bool) -> bool:
    """Whether this request's KV is pushed layer by layer during its last prefill forward."""
    value = (params or {}).get("prfaas_layerwise")
    return default if value is None else bool(value)


def remote_token_count(num_prompt_tokens: int) -> int:
    """Tokens the decode side loads: all but the last, which it recomputes for the first logits
    (for recurrent layers that is required: the state must be h(N-1) before the last token)."""
    return max(num_prompt_tokens - 1, 0)


def prefill_params(transfer_id: str, decode_engine: str) -> dict[str, Any]:
    """kv_transfer_params of the router's prefill request."""
    return {
        "do_remote_decode": True,
        "do_remote_prefill": False,
        "transfer_id": transfer_id,
        "remote_engine_id": decode_engine,
    }


def decode_params(transfer_id: str, prefill_engine: str) -> dict[str, Any]:
    """kv_transfer_params of the router's decode request."""
    return {
        "do_remote_decode": False,
        "do_remote_prefill": True,
        "transfer_id": transfer_id,
        "remote_engine_id": prefill_engine,
    }


def layer_order(names: Sequence[str]) -> list[str]:
    """Layers in model order ("model.layers.12.attn" after ".2."), the index both sides share."""

    def key(name: str) -> tuple[int, str]:
        m = _LAYER_NO.search(name)
        return (int(m.group(1)) if m else 1 << 30, name)

    return sorted(names, key=key)


def live_blocks(block_ids: Sequence[int], is_state_group: bool) -> list[int]:
    """Blocks that carry data: state (Mamba/GDN) groups drop align-mode null placeholders."""
    if is_state_group:
        return [b for b in block_ids if b != NULL_BLOCK_ID]
    return list(block_ids)


def tail_align(sent: int, wanted: int) -> int:
    """Index of the first sent block the receiver lands: blocks it already had (local prefix hits)
    are the leading ones, so it takes the last `wanted`. Raises when fewer were sent."""
    if wanted > sent:
        raise ValueError(f"receiver needs {wanted} blocks but only {sent} arrived")
    return sent - wanted
