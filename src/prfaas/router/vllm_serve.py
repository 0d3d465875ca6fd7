"""`python -m prfaas.router.vllm_serve DEPLOYMENT.toml`: the OpenAI-compatible router over vLLM."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import uvicorn

from prfaas.errors import UsageError
from prfaas.router.vllm_backend import VllmBackend
from prfaas.router.vllm_nodes import load_fleet
from prfaas.server.app import create_app


async def serve(path: Path, host: str, port: int, max_context: int) -> None:
    backend = VllmBackend(load_fleet(path))
    backend.start_events()
    app = create_app(backend, model_name=backend.fleet.model, max_context_tokens=max_context)

    @app.get("/internal/vllm")
    async def state() -> dict[str, object]:
        return {"decisions": backend.log[-200:], "event_batches": backend.events.batches,
                "index_blocks": {n: backend.index.blocks_held(n) for n in backend.fleet.nodes}}

    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        await server.serve()
    finally:
        await backend.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("deployment", type=Path)
    ap.add_argument("--host", default="127.0.0.1")  # loopback unless asked: nothing public
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--max-context", type=int, default=4096)
    args = ap.parse_args(argv)
    try:
        asyncio.run(serve(args.deployment, args.host, args.port, args.max_context))
    except UsageError as exc:
        print(f"prfaas: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
