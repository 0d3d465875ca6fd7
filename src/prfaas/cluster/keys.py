"""The key layout of a deployment's state in etcd, and the typed values stored under it.

    /prfaas/<deployment>/nodes/<node>    NodeMeta, under the node's lease (gone when it dies)
    /prfaas/<deployment>/roles/<node>    the PD role an operator or the rebalancer assigned
    /prfaas/<deployment>/policy          PolicyRecord: name, parameters, current t
    /prfaas/<deployment>/leader/<task>   the lease holder that runs a singleton task
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ROOT = "/prfaas"


class NodeMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """What a node tells the cluster about itself (unknown fields from newer nodes are ignored)."""

    name: str
    cluster: str
    role: Literal["prefill", "decode"]
    advertise: str  # control address other hosts use, host:port
    kv_advertise: str = ""  # KV transfer address, host:port ("" for nodes that receive no KV)
    max_batch: int = 1
    pool_bytes: int = 0
    engine: str = ""
    model: str = ""


class PolicyRecord(msgspec.Struct, frozen=True):
    name: str
    params: dict[str, Any] = {}
    threshold_tokens: int = 0


def deployment_prefix(deployment: str) -> str:
    if not deployment or "/" in deployment:
        raise ValueError(f"a deployment name must be non-empty without '/', got {deployment!r}")
    return f"{ROOT}/{deployment}/"


def node_key(deployment: str, node: str) -> bytes:
    return f"{deployment_prefix(deployment)}nodes/{node}".encode()


def nodes_prefix(deployment: str) -> bytes:
    return f"{deployment_prefix(deployment)}nodes/".encode()


def role_key(deployment: str, node: str) -> bytes:
    return f"{deployment_prefix(deployment)}roles/{node}".encode()


def policy_key(deployment: str) -> bytes:
    return f"{deployment_prefix(deployment)}policy".encode()


def leader_key(deployment: str, task: str) -> bytes:
    return f"{deployment_prefix(deployment)}leader/{task}".encode()


def node_name(key: bytes, deployment: str) -> str:
    """The node a `nodes/` key names."""
    return key.decode().removeprefix(nodes_prefix(deployment).decode())


encode = msgspec.json.encode
decode_node = msgspec.json.Decoder(NodeMeta).decode
decode_policy = msgspec.json.Decoder(PolicyRecord).decode
