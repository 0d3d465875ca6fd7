"""Router probe for the chaos harness: loop lag, 429 timings, phase and GC pauses (dev only).

    PRFAAS_PROBE_DIR=out/probe PYTHONPATH=benchmarks/probe:src \\
        .venv/bin/python benchmarks/chaos.py --scenarios overload-3x

Python imports this file at start in every process of the run (the harness and what it spawns);
it does nothing unless PRFAAS_PROBE_DIR is set. In the router process it writes, per pid:
lag-PID.txt (wall time, how late the event loop ran a callback posted from a thread every 50 ms,
the process's CPU seconds), status-PID.txt (each /v1/completions answer: status, ms from the
ASGI call to the response start), phases-PID.txt (wall and thread-CPU ms of the convert, place
and admission steps), gc-PID.txt (collections over 1 ms: wall and CPU ms), and with
PRFAAS_PROBE_GC_OBJECTS=1 gcobj-PID.txt (the young generations' census at each gen-1 pass),
with PRFAAS_PROBE_CPROFILE=1 router-PID.prof (cProfile of the main thread, every 5 s). In the
harness: client.txt (each 429: wall time of the send, ms as the client measured it, tokens).
"""

from __future__ import annotations

import importlib
import importlib.abc
import os
import sys
import threading
import time
from typing import Any

DIR = os.environ.get("PRFAAS_PROBE_DIR", "")
ARGV = " ".join(sys.argv)
ROUTER = bool(DIR) and "--router" in ARGV and "--standby" not in ARGV
HARNESS = bool(DIR) and "chaos.py" in ARGV
_loop: list[Any] = []


def _out(name: str) -> Any:
    return open(f"{DIR}/{name}-{os.getpid()}.txt", "a", buffering=1)


def _on_import(module: str, patch: Any) -> None:
    """Run `patch()` just before `module` is first imported (in whichever thread imports it)."""

    class Hook(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> None:
            if name == module:
                sys.meta_path.remove(self)
                patch()

    sys.meta_path.insert(0, Hook())


def _lag() -> None:
    out = _out("lag")
    while not _loop:
        time.sleep(0.2)
    while True:
        t0, done = time.monotonic(), threading.Event()
        _loop[0].call_soon_threadsafe(done.set)
        done.wait(10)
        lag_ms = 1000 * (time.monotonic() - t0)
        out.write(f"{time.time():.3f} {lag_ms:.1f} {time.process_time():.3f}\n")
        time.sleep(0.05)


def _timed(fn: Any, name: str, out: Any) -> Any:
    def wrapper(*args: Any, **kw: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kw)
        finally:
            wall, cpu = 1000 * (time.perf_counter() - t0), 1000 * (time.thread_time() - c0)
            out.write(f"{time.time():.3f} {name} {wall:.2f} {cpu:.2f}\n")

    return wrapper


def _patch_router() -> None:
    import prfaas.security.asgi as asgi
    import prfaas.server.app as server_app
    from prfaas.router.admission import Admitter
    from prfaas.router.backend import RouterBackend

    phases = _out("phases")
    server_app.completion_request = _timed(server_app.completion_request, "convert", phases)
    RouterBackend._place = _timed(RouterBackend._place, "place", phases)  # type: ignore[method-assign]
    Admitter.check = _timed(Admitter.check, "admit", phases)  # type: ignore[method-assign]
    status, make_server = _out("status"), asgi.make_server

    def timed_server(app: Any, ssl_context: Any, **kw: Any) -> Any:
        async def timed(scope: Any, receive: Any, send: Any) -> None:
            if scope.get("type") != "http" or scope.get("path") != "/v1/completions":
                return await app(scope, receive, send)
            t0 = time.monotonic()

            async def send_timed(msg: Any) -> None:
                if msg["type"] == "http.response.start":
                    ms = 1000 * (time.monotonic() - t0)
                    status.write(f"{time.time():.3f} {msg['status']} {ms:.1f}\n")
                await send(msg)

            return await app(scope, receive, send_timed)

        return make_server(timed, ssl_context, **kw)

    asgi.make_server = timed_server


def _watch_gc() -> None:
    import gc

    out, started = _out("gc"), [0.0, 0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.thread_time()]
            return
        wall = 1000 * (time.perf_counter() - started[0])
        cpu = 1000 * (time.thread_time() - started[1])
        if wall > 1 or info["generation"] == 2:
            out.write(f"{time.time():.3f} gen{info['generation']} {wall:.1f} cpu {cpu:.1f} "
                      f"collected {info['collected']}\n")

    gc.callbacks.append(callback)
    if os.environ.get("PRFAAS_PROBE_GC_OBJECTS"):
        gc.callbacks.insert(0, _census(gc))


def _census(gc: Any) -> Any:
    import collections

    out = _out("gcobj")

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 1:
            objs = gc.get_objects(generation=0) + gc.get_objects(generation=1)
            items = sum(len(o) for o in objs if isinstance(o, list | dict | tuple))
            kinds = collections.Counter(type(o).__name__ for o in objs).most_common(6)
            out.write(f"{time.time():.3f} objects {len(objs)} items {items} {kinds}\n")

    return callback


def _profile() -> None:
    import cProfile

    prof = cProfile.Profile()

    def dump() -> None:
        while True:
            time.sleep(5)
            prof.dump_stats(f"{DIR}/router-{os.getpid()}.prof")  # from this thread: main keeps on

    threading.Thread(target=dump, daemon=True).start()
    prof.enable()


def _noting_loop(run: Any) -> Any:
    import asyncio

    def run_noting_loop(coro: Any, **kw: Any) -> Any:
        async def noted() -> Any:
            _loop.append(asyncio.get_running_loop())
            return await coro

        return run(noted(), **kw)

    return run_noting_loop


def _patch_aio() -> None:  # the router runs on prfaas.aio.run (uvloop when installed)
    import prfaas.aio

    prfaas.aio.run = _noting_loop(prfaas.aio.run)  # type: ignore[assignment]


def _start_router() -> None:
    import asyncio

    asyncio.run = _noting_loop(asyncio.run)  # type: ignore[assignment]
    threading.Thread(target=_lag, daemon=True).start()
    _on_import("prfaas.commands.worker", _patch_aio)
    _on_import("prfaas.router.app", _patch_router)
    _watch_gc()
    if os.environ.get("PRFAAS_PROBE_CPROFILE"):
        _profile()


def _patch_client() -> None:
    import prfaas.bench.client as client

    out, send_one = open(f"{DIR}/client.txt", "a", buffering=1), client.send_one  # noqa: SIM115

    async def timed(pool: Any, req: Any, *args: Any, **kw: Any) -> Any:
        sent = time.time()
        result = await send_one(pool, req, *args, **kw)
        if result.error == "http_429":
            out.write(f"{sent:.3f} {1000 * result.e2e_s:.1f} {req.input_tokens}\n")
        return result

    client.send_one = timed


if ROUTER:
    _start_router()
elif HARNESS:
    _on_import("prfaas.bench.chaos", _patch_client)
