"""`prfaas up`: start a live PrfaaS-PD deployment (router + one process per node) and serve it."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

EMBEDDED = ("local.toml", "paper-emulated.toml")


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="start a live deployment: router (OpenAI API) + PrfaaS and PD workers",
        description="Start the router and every worker of a deployment file as separate "
        "processes, wait until all are healthy, print the URL, and serve until Ctrl-C or "
        "SIGTERM, which stops every process. Without --config it runs the embedded "
        "examples/local.toml (1 PrfaaS prefill node, a PD cluster with 1 prefill + 1 decode "
        "node, the tiny Qwen3.5-style hybrid, a 1 Gbit/s 20 ms link).",
        epilog="examples: prfaas up | prfaas up --policy homogeneous | "
        "prfaas up --config examples/paper-emulated.toml",
    )
    p.add_argument(
        "--config",
        help="deployment file (TOML); default: the embedded local.toml; "
        "`local.toml` / `paper-emulated.toml` name the embedded examples",
    )
    p.add_argument(
        "--policy",
        help="routing policy: homogeneous | naive | prfaas-static | prfaas (default: the file's)",
    )
    p.add_argument("--log-level", default="WARNING", help="worker log level (default WARNING)")
    p.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the run folder with every process's log after stopping",
    )
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for health")
    p.add_argument(
        "--api-key",
        help="require this key on the OpenAI API (also $PRFAAS_API_KEY, or [[security.api_keys]] "
        "in the file); the router gets it through its environment, never its command line",
    )
    p.add_argument(
        "--etcd",
        default="",
        help="join this etcd (client URL; https with the deployment's PKI) instead of starting "
        "an embedded one in the run folder",
    )
    p.set_defaults(run=run)


@contextlib.contextmanager
def config_file(name: str | None) -> Iterator[Path]:
    """A path to the deployment file: the user's, or an embedded example (works from a wheel)."""
    if name and Path(name).exists():
        yield Path(name)
        return
    embedded = name or "local.toml"
    if embedded not in EMBEDDED:
        from prfaas.errors import UsageError

        raise UsageError(
            f"deployment file {name} does not exist (embedded examples: {', '.join(EMBEDDED)})"
        )
    ref = resources.files("prfaas.deploy").joinpath("examples", embedded)
    with resources.as_file(ref) as path:
        yield path


def _sigterm(_signo: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    import os

    from prfaas.deploy.supervisor import Deployment

    if args.api_key:
        os.environ["PRFAAS_API_KEY"] = args.api_key  # inherited by the router process
    with config_file(args.config) as path:
        from prfaas.deploy.vllm_nodes import is_vllm_file, run_up

        if is_vllm_file(path):  # engine = "vllm": vLLM instances behind the vLLM router backend
            return run_up(path, args.policy, args.timeout, args.keep_logs)
        dep = Deployment(path, args.policy, log_level=args.log_level, keep_run_dir=args.keep_logs,
                         etcd_url=args.etcd)
        # Both stop everything; SIGINT explicitly too, since a shell starts background jobs
        # with SIGINT ignored and Python would then never raise KeyboardInterrupt.
        previous = {sig: signal.signal(sig, _sigterm) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            print(
                f"starting {len(dep.cfg.nodes)} workers + router from {path} "
                f"(policy {dep.policy}, engine {dep.cfg.engine.kind})...",
                file=sys.stderr,
            )
            url = dep.start(timeout_s=args.timeout)
            _announce(url, dep)
            _serve(dep)
        except KeyboardInterrupt:
            print("stopping...", file=sys.stderr)
        finally:
            for sig in previous:  # a second Ctrl-C must not interrupt the stop itself
                signal.signal(sig, signal.SIG_IGN)
            dep.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if args.keep_logs:
                print(f"logs kept in {dep.run_dir}", file=sys.stderr)
        return 0


def _announce(url: str, dep: Any) -> None:
    import os

    from prfaas.deploy.planning import startup_plan

    model = dep.cfg.engine.model
    print(
        f"prfaas is up: {url}  (OpenAI API at {url}/v1, dashboard {url}/dashboard, "
        f"metrics {url}/metrics)"
    )
    keyed = bool(dep.cfg.security.api_keys) or bool(os.environ.get("PRFAAS_API_KEY"))
    auth = "-H \"Authorization: Bearer $PRFAAS_API_KEY\" " if keyed else ""  # never the key itself
    print(
        f"try: curl -s {url}/v1/completions {auth}-H 'Content-Type: application/json' "
        f'-d \'{{"model": "{model}", "prompt": "Hello", "max_tokens": 16}}\''
    )
    if len(dep.router_urls) > 1:
        urls = ",".join(dep.router_urls)
        front = "behind HAProxy at the URL above" if "haproxy" in dep.procs else (
            f"no HAProxy: give clients every URL, e.g. prfaas bench --url {urls}")
        print(f"router replicas: {', '.join(dep.router_urls)} ({front})")
    # What the router planned (after its warm-up pass on a real engine), and what the file set.
    if dep.planned.get("warmup") == "failed":  # timed out or failed: the file's/default t
        print(f"warning: {dep.plan_line}", file=sys.stderr)
    else:
        print(dep.plan_line or startup_plan(dep.cfg).line)
    if dep.pki_dir is not None:  # operator tools (prfaas link set) need both; never a secret
        print(f"operator: control {dep.control_url}, certificates in {dep.pki_dir}")
    print("Ctrl-C stops every process.", flush=True)


def _serve(dep: Any) -> None:
    """Wait for Ctrl-C / SIGTERM; restart any process that dies (deploy/healer.py), each restart
    logged here with its reason. Once the healer gives up on every router, or on HAProxy, nothing
    can serve: the deployment stops."""
    from prfaas.deploy.healer import Healer

    healer = Healer(dep)
    while True:
        time.sleep(0.2)
        for line in healer.tick():
            print(f"warning: {line}", file=sys.stderr, flush=True)
        if set(dep.router_names) <= healer.given_up or "haproxy" in healer.given_up:
            print("error: no router left to serve; stopping", file=sys.stderr, flush=True)
            raise SystemExit(1)
