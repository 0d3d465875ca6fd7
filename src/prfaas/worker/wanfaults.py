"""Test hook of the WAN emulator (`--fault-hooks`): flip bits of KV crossing the emulated link."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from prfaas.security.asgi import Guard, read_bounded
from prfaas.security.tls import OPERATOR

SKIP_BYTES = 8192  # leave each connection's handshake alone: corrupt what follows it


class FlipSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: str  # flip_bit
    count: int = 1


class BitFlipper:
    """A relay tamper hook: once armed, flips one bit in each of the next `count` reads that
    carry at least 64 bytes past SKIP_BYTES of their connection. Counts the connections seen,
    so a test can tell that the sender re-connected after the receiver dropped the bad one."""

    def __init__(self) -> None:
        self.armed = 0
        self.flipped = 0
        self.connections: set[int] = set()

    def __call__(self, conn: int, offset: int, data: bytes) -> bytes:
        self.connections.add(conn)
        if self.armed and offset > SKIP_BYTES and len(data) >= 64:
            self.armed -= 1
            self.flipped += 1
            out = bytearray(data)
            out[len(out) // 2] ^= 0x10
            return bytes(out)
        return data

    def state(self) -> dict[str, int]:
        return {"armed": self.armed, "flipped": self.flipped, "connections": len(self.connections)}


def fault_route(flipper: BitFlipper, guard: Guard) -> Callable[[Request], Awaitable[Response]]:
    """POST /fault {"kind": "flip_bit", "count": N} (operator only) -> the flipper's state."""

    async def fault(request: Request) -> Response:
        if (deny := guard.check(request, (OPERATOR,))) is not None:
            return deny
        try:
            spec = msgspec.json.decode(await read_bounded(request, 1024), type=FlipSpec)
            if spec.kind != "flip_bit" or not 0 <= spec.count <= 100:
                raise ValueError("kind must be flip_bit and count 0-100")
        except (msgspec.MsgspecError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        flipper.armed = spec.count
        return JSONResponse(flipper.state())

    return fault
