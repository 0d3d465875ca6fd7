"""Readers of a deployment file's [security] and [limits] tables."""

from __future__ import annotations

from pathlib import Path

from prfaas.deploy.config import ApiKey, LimitsConfig, SecurityConfig
from prfaas.planner.fields import Table

KV_TLS = ("off", "cross", "all")


def _flag(t: Table, key: str, default: bool) -> bool:
    if not t.has(key):
        t.used.add(key)
        return default
    value = t.raw(key)
    if not isinstance(value, bool):
        raise t.fail(key, f"must be true or false, got {value!r}")
    return value


def security_section(root: Table) -> SecurityConfig:
    t = root.table("security", optional=True)
    if t is None:
        return SecurityConfig()
    kv_tls = t.string("kv_tls", default="cross")
    if kv_tls not in KV_TLS:
        raise t.fail("kv_tls", f"must be one of {', '.join(KV_TLS)}, got {kv_tls!r}")
    pki = None
    if t.has("pki"):
        pki = t.string("pki")
        if not Path(pki).is_absolute():  # relative to the deployment file
            pki = str((Path(t.source).parent / pki).resolve())
    cfg = SecurityConfig(
        insecure=_flag(t, "insecure", False),
        pki=pki,
        kv_tls=kv_tls,
        public_metrics=_flag(t, "public_metrics", True),
        public_dashboard=_flag(t, "public_dashboard", True),
        api_keys=_api_keys(t),
    )
    t.finish()
    return cfg


def _api_keys(t: Table) -> tuple[ApiKey, ...]:
    """[[security.api_keys]] name = "alice", key = "..." | key_file = "path" (one key a client)."""
    if not t.has("api_keys"):
        t.used.add("api_keys")
        return ()
    raw = t.raw("api_keys")
    if not isinstance(raw, list):
        raise t.fail("api_keys", "must be an array of tables ([[security.api_keys]])")
    out: list[ApiKey] = []
    for i, item in enumerate(raw):
        k = Table(item, f"{t.name('api_keys')}[{i}]", t.source)
        name = k.string("name")
        if k.has("key_file"):
            path = Path(k.string("key_file"))
            path = path if path.is_absolute() else Path(t.source).parent / path
            try:
                key = path.read_text().strip()
            except OSError as exc:
                raise k.fail("key_file", f"cannot be read ({exc.strerror})") from None
        else:
            key = k.string("key")
        if len(key) < 16:
            raise k.fail("key", "must be at least 16 characters")
        k.finish()
        out.append(ApiKey(name, key))
    if len({k.key for k in out}) != len(out) or len({k.name for k in out}) != len(out):
        raise t.fail("api_keys", "has a name or key twice")
    return tuple(out)


def limits_section(root: Table) -> LimitsConfig:
    t = root.table("limits", optional=True)
    if t is None:
        return LimitsConfig()
    d = LimitsConfig()
    cfg = LimitsConfig(
        max_body_bytes=t.integer("max_body_bytes", default=d.max_body_bytes, minimum=1024),
        max_prompt_tokens=t.integer("max_prompt_tokens", default=d.max_prompt_tokens),
        max_tokens=t.integer("max_tokens", default=d.max_tokens, minimum=1),
        max_concurrent_per_key=t.integer(
            "max_concurrent_per_key", default=d.max_concurrent_per_key, minimum=1
        ),
        max_connections=t.integer("max_connections", default=d.max_connections, minimum=16),
        ttft_slo_s=t.number("ttft_slo_s", default=d.ttft_slo_s),
        max_queue_wait_s=t.number("max_queue_wait_s", default=d.max_queue_wait_s),
        recovery_s=t.number("recovery_s", default=d.recovery_s),
        recovery_load=t.number("recovery_load", default=d.recovery_load),
        max_queue_per_node=t.integer("max_queue_per_node", default=d.max_queue_per_node),
        max_queue=t.integer("max_queue", default=d.max_queue),
        tokens_per_s_per_key=t.number("tokens_per_s_per_key", default=d.tokens_per_s_per_key),
    )
    if cfg.recovery_load >= 1.0:  # no spare capacity would ever drain the backlog
        raise t.fail("recovery_load", f"must be below 1, got {cfg.recovery_load:g}")
    t.finish()
    return cfg
