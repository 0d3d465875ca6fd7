"""Run a service's top-level coroutine on uvloop when it is installed, else on asyncio's loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# PRFAAS_LOOP=asyncio keeps the standard loop (paired measurements, a suspected loop bug).
LOOP_ENV = "PRFAAS_LOOP"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(coro)`, on uvloop unless it is missing or PRFAAS_LOOP=asyncio: measured on
    the chaos harness, it saves 2-9% of the router's CPU and 4-7% of a deployment's
    (docs/reliability.md, "uvloop"); CPU is what requests wait for on a busy host."""
    if os.environ.get(LOOP_ENV, "").strip().lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


def loop_name() -> str:
    """Which loop runs the calling coroutine ('uvloop' or 'asyncio'), for the startup line."""
    return (
        "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    )
