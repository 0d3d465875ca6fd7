"""`prfaas router`: run one router (OpenAI API + control listener) of a deployment, on any host."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLE = """\
example (the router on 10.0.0.1, nodes elsewhere; the file names every node's host/advertise):
  prfaas certs init --dir pki && prfaas certs issue --config dep.toml --dir pki
  prfaas router --config dep.toml --pki pki --etcd https://10.0.0.1:2379 --port 8000
  # then on each node's host:  prfaas worker --config dep.toml --node pd-d0 --pki pki \\
  #     --etcd https://10.0.0.1:2379 --secret-file secret.txt
Several routers may run at once (router replicas); put HAProxy in front of them, or give
clients every URL (`prfaas bench --url http://10.0.0.1:8000,http://10.0.0.2:8000`).
[router] host/control_host/advertise in the file say which addresses it binds and advertises.
"""


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="run one router of a deployment (standalone, any host)",
        description="Run one router process: the public OpenAI API on [router] host and the "
        "mutual-TLS control listener on [router] control_host. `prfaas up` runs the same "
        "process on one machine.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="deployment file (TOML)")
    p.add_argument("--etcd", required=True, help="the cluster's etcd client URL (https with a "
                   "PKI): membership, policy and roles come from it")
    p.add_argument("--pki", type=Path, help="cluster PKI folder (`prfaas certs`; router.pem)")
    p.add_argument("--name", default="", help="this replica's name in etcd "
                   "(default: router-HOST-PID)")
    p.add_argument("--port", type=int, help="public API port (default: the file's [router] port)")
    p.add_argument("--control-port", type=int, help="control port (default: the file's)")
    p.add_argument("--wan-url", default="", help="the WAN emulator's control URL, if any")
    p.add_argument("--host", default="", help="bind and advertise this address (default: the "
                   "file's [router] addresses)")
    p.add_argument("--policy", help="run the deployment under this policy (its [variant.*])")
    p.add_argument("--ready-file", type=Path, help="write the router's URLs here when ready")
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prfaas.commands import worker
    from prfaas.errors import UsageError

    for opt in ("port", "control_port"):
        value = getattr(args, opt)
        if value is not None and not 0 <= value <= 65535:
            raise UsageError(f"--{opt.replace('_', '-')} must be a TCP port, got {value}")
    url = f"http://0:{args.port}" if args.port is not None else ""
    return worker.run(worker.as_process(args, router=True, url=url))
