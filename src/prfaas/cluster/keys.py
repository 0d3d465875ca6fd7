"""The key layout of a deployment's state in etcd, and the typed values stored under it.

    /prfaas/<deployment>/nodes/<node>    NodeMeta, under the node's lease (gone when it dies)
    /prfaas/<deployment>/roles/<node>    the PD role an operator or the rebalancer assigned
    /prfaas/<deployment>/policy          PolicyRecord: name, parameters, current t
    /prfaas/<deployment>/leader/<task>   the lease holder that runs a singleton task
    /prfaas/<deployment>/routers/<name>  RouterMeta of each router replica, under its lease
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
    role_version: int = 0  # completed role changes: a router drops metadata older than its view
    epoch: float = 0.0  # process start: a new epoch is a restarted node with an empty pool
    events: str = ""  # ZMQ PUB endpoint of its KV events and telemetry (tcp://host:port)
    replay: str = ""  # ZMQ ROUTER endpoint that replays missed event batches
    curve_key: str = ""  # Z85 CURVE public key of the event stream ("": plain ZMQ, insecure)
    max_context_tokens: int = 0
    needs_state: bool = True  # prefix reuse needs a linear-state checkpoint (hybrid models)


class RouterMeta(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """A router replica: the CURVE client key the nodes' event streams admit."""

    name: str
    curve_key: str = ""


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


def roles_prefix(deployment: str) -> bytes:
    return f"{deployment_prefix(deployment)}roles/".encode()


def router_key(deployment: str, name: str) -> bytes:
    return f"{deployment_prefix(deployment)}routers/{name}".encode()


def routers_prefix(deployment: str) -> bytes:
    return f"{deployment_prefix(deployment)}routers/".encode()


def node_name(key: bytes, deployment: str) -> str:
    """The node a `nodes/` key names."""
    return key.decode().removeprefix(nodes_prefix(deployment).decode())


encode = msgspec.json.encode
decode_node = msgspec.json.Decoder(NodeMeta).decode
decode_policy = msgspec.json.Decoder(PolicyRecord).decode
decode_router = msgspec.json.Decoder(RouterMeta).decode
