"""Per-identity permissions in etcd (RBAC), so that a node's certificate writes only its own record.

With client-certificate authentication and auth enabled, etcd takes a client's user name from its
certificate's common name: the same identity names as the control network's. Every identity may
read the deployment's keys; a node may write only `nodes/<itself>`; `router` the keys routers
write (roles, policy, leader election, replica records); `operator` everything (role root).
Passwords are random and thrown away: nobody logs in with one.
"""

from __future__ import annotations

import secrets
from typing import Any

from aetcd import rpc

from prfaas.cluster.keys import (
    deployment_prefix,
    leader_key,
    node_key,
    policy_key,
    roles_prefix,
    routers_prefix,
)
from prfaas.security.tls import OPERATOR, ROUTER

READ, READWRITE = rpc.Permission.READ, rpc.Permission.READWRITE


def prefix_end(prefix: bytes) -> bytes:
    """etcd's range end for "every key starting with `prefix`"."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


def grants(deployment: str, nodes: list[str]) -> dict[str, list[tuple[int, bytes, bytes]]]:
    """Identity -> (permission, key, range end; b"" for one key) it is granted (pure)."""
    everything = deployment_prefix(deployment).encode()
    read = (READ, everything, prefix_end(everything))
    leader = leader_key(deployment, "")
    out = {ROUTER: [read, (READWRITE, policy_key(deployment), b""),
                    *((READWRITE, p, prefix_end(p)) for p in (
                        roles_prefix(deployment), routers_prefix(deployment), leader))]}
    for node in nodes:
        out[node] = [read, (READWRITE, node_key(deployment, node), b"")]
    return out


async def enable(client: Any, deployment: str, nodes: list[str]) -> None:
    """Create the roles and users, then turn authentication on (run once, on a fresh etcd)."""
    import asyncio

    auth = rpc.AuthStub(client.channel)
    gate = asyncio.Semaphore(32)  # a fleet's thousand identities: overlap the raft round trips

    async def user(name: str, role: str) -> None:
        # No password: these users log in only with their certificate (and no bcrypt per user).
        options = rpc.UserAddOptions(no_password=True)
        await auth.UserAdd(rpc.AuthUserAddRequest(name=name, options=options))
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=name, role=role))

    async def identity(name: str, perms: list[tuple[int, bytes, bytes]]) -> None:
        async with gate:
            role = f"prfaas-{name}"
            await auth.RoleAdd(rpc.AuthRoleAddRequest(name=role))
            for kind, key, end in perms:
                perm = rpc.Permission(permType=kind, key=key, range_end=end)
                await auth.RoleGrantPermission(
                    rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm)
                )
            await user(name, role)

    await auth.RoleAdd(rpc.AuthRoleAddRequest(name="root"))
    await auth.UserAdd(rpc.AuthUserAddRequest(name="root", password=secrets.token_hex(24)))
    await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user="root", role="root"))
    await user(OPERATOR, "root")
    await asyncio.gather(*(identity(n, p) for n, p in grants(deployment, nodes).items()))
    await auth.AuthEnable(rpc.AuthEnableRequest())
