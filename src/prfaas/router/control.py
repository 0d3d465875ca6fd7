"""The router's control listener: /internal/* over mutual TLS, each route for its identities only.

Policy, role, state and decisions are accepted only from the operator (nodes join through etcd,
router/cluster_members.py). Bodies are typed msgspec Structs: a malformed one is a
400, and a policy whose parameters do not type-check never reaches the routing code.
"""

from __future__ import annotations

import logging
from dataclasses import fields
from typing import Annotated, Any

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prfaas.errors import UsageError
from prfaas.policy.params import PolicyParams
from prfaas.policy.registry import policy_names
from prfaas.router.backend import RouterBackend
from prfaas.security.asgi import Guard, read_bounded
from prfaas.security.tls import OPERATOR

log = logging.getLogger(__name__)
MAX_CONTROL_BODY = 1 << 20
_ENC = msgspec.json.Encoder()


class PolicyChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    params: dict[str, Any] | None = None


class RoleRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    node: str
    role: str


class LinkChange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`prfaas link set`: a link's new modelled rate (both directions when src/dst are omitted)."""

    gbps: Annotated[float, msgspec.Meta(ge=0, le=1e6)]
    src: str | None = None
    dst: str | None = None


def _json(obj: Any, status: int = 200) -> Response:
    return Response(_ENC.encode(obj), status_code=status, media_type="application/json")


def _bad(message: str, status: int = 400) -> Response:
    return _json({"error": {"message": message, "type": "invalid_request_error",
                            "param": None, "code": "invalid_value"}}, status)



def _decode(data: bytes, kind: type[Any]) -> Any:
    return msgspec.json.decode(data, type=kind)


def checked_params(params: dict[str, Any]) -> dict[str, Any]:
    """The given policy parameters, type-checked against PolicyParams (ValueError if not)."""
    known = {f.name for f in fields(PolicyParams)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise ValueError(f"unknown policy parameter {unknown[0]!r}")
    try:
        full = msgspec.convert(params, PolicyParams)
    except msgspec.ValidationError as exc:
        raise ValueError(f"invalid policy parameters: {exc}") from None
    return {k: getattr(full, k) for k in params}


def build_control_app(backend: RouterBackend, guard: Guard) -> Starlette:
    nodes = set(backend.members.nodes)

    async def policy(request: Request) -> Response:
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        try:
            body = _decode(await read_bounded(request, MAX_CONTROL_BODY), PolicyChange)
            if body.name not in policy_names():
                raise ValueError(f"unknown policy {body.name!r}")
            params = checked_params(body.params) if body.params is not None else None
            backend.set_policy(body.name, params)
        except (msgspec.MsgspecError, ValueError, TypeError, UsageError) as exc:
            return _bad(str(exc))
        return _json({"policy": backend.policy_name})

    async def role(request: Request) -> Response:
        """Drain a node and switch its role (what the rebalancer does), e.g. for tests."""
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        try:
            body = _decode(await read_bounded(request, MAX_CONTROL_BODY), RoleRequest)
            if body.node not in nodes or body.role not in ("prefill", "decode"):
                raise ValueError(f"unknown node {body.node!r} or role {body.role!r}")
            await backend.change_role(body.node, body.role)
        except TimeoutError:
            return _bad(f"{body.node} did not switch roles in time", 504)
        except (msgspec.MsgspecError, ValueError, httpx.HTTPError) as exc:
            return _bad(str(exc))
        return _json({"node": body.node, "role": body.role})

    async def link(request: Request) -> Response:
        """Change a link's modelled rate live (`prfaas link set`); operator only."""
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        from prfaas.router.linkctl import set_link_rate

        try:
            body = _decode(await read_bounded(request, 4096), LinkChange)
            done = await set_link_rate(backend, body.gbps, body.src, body.dst)
        except (msgspec.MsgspecError, ValueError, httpx.HTTPError) as exc:
            return _bad(str(exc))
        return _json({"links": done})

    async def state(request: Request) -> Response:
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        from prfaas.router.state import router_state

        return _json(router_state(backend))

    async def decisions(request: Request) -> Response:
        """Routing decisions in order (?since=SEQ for those after SEQ); see decision_log.py."""
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return _bad("since must be an integer")
        log_ = backend.decision_log
        return _json({"count": log_.count, "decisions": log_.since(since)})

    async def index(request: Request) -> Response:
        """This replica's global prefix index per node (built from the nodes' event streams)."""
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        idx = backend.members.index
        return _json({n: idx.held(n) for n in backend.members.nodes})

    async def health(request: Request) -> Response:
        if (deny := guard.check(request, lambda _peer: True)) is not None:
            return deny
        return _json(await backend.health_detail())

    return Starlette(routes=[
        Route("/internal/policy", policy, methods=["POST"]),
        Route("/internal/role", role, methods=["POST"]),
        Route("/internal/link", link, methods=["POST"]),
        Route("/internal/state", state, methods=["GET"]),
        Route("/internal/decisions", decisions, methods=["GET"]),
        Route("/internal/health", health, methods=["GET"]),
        Route("/internal/index", index, methods=["GET"]),
    ])
