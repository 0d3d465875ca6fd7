"""`prfaas wan`: run the WAN link emulator (shaping relays) of a deployment, on any host."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLE = """\
example (on the host that relays KV between the clusters; it binds [router] control_host):
  prfaas wan --config dep.toml --pki pki --port 9100 --state-file /var/lib/prfaas/relays.json
  prfaas router --config dep.toml --pki pki --wan-url https://10.0.0.1:9100 ...
The emulator shapes each [[links]] entry (rate, RTT; netns links need root). With
--state-file, a restarted emulator reopens its relays on the ports senders already dial.
"""


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="run the WAN link emulator of a deployment (standalone, any host)",
        description="Run the WAN emulator: one shaping relay per (link direction, receiving "
        "node), created when the router asks; its control listener is mutual TLS.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", required=True, help="deployment file (TOML)")
    p.add_argument("--pki", type=Path, help="cluster PKI folder (`prfaas certs`; wan.pem)")
    p.add_argument("--port", type=int, default=0, help="control port (default: any free one)")
    p.add_argument("--state-file", type=Path, help="record relays here; reopen them on restart")
    p.add_argument("--host", default="", help="bind and advertise this address (default: the "
                   "file's [router] addresses)")
    p.add_argument("--policy", help="run the deployment under this policy (its [variant.*])")
    p.add_argument("--ready-file", type=Path, help="write the emulator's URL here when ready")
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prfaas.commands import worker
    from prfaas.errors import UsageError

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be a TCP port, got {args.port}")
    return worker.run(worker.as_process(args, wan=True, url=f"http://0:{args.port}"))
