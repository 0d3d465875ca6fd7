"""`prfaas link set --gbps X`: change a running deployment's inter-cluster link rate live."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from prfaas.errors import UsageError


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="change an emulated link's rate while the deployment runs",
        description=(
            "Set the modelled rate of the running deployment's inter-cluster link(s): the WAN "
            "emulator's shaper (or the netns link's tc qdisc) and the router's capacity follow at "
            "once, and the policy's bandwidth table with them."
        ),
        epilog=(
            "example: prfaas link set --url https://127.0.0.1:41234 --pki /tmp/prfaas-up-x/pki "
            "--gbps 10  (`prfaas up` prints both as its `operator:` line)"
        ),
    )
    p.add_argument("action", choices=("set",), help="set: give the link a new rate")
    p.add_argument("--url", required=True,
                   help="the router's control URL (`prfaas up` prints it on its operator: line)")
    p.add_argument("--pki", default=os.environ.get("PRFAAS_PKI"),
                   help="folder with ca.pem and the operator's certificate (default $PRFAAS_PKI; "
                   "omit only for a deployment with [security] insecure = true)")
    p.add_argument("--gbps", type=float, required=True, help="new modelled rate, Gbit/s (> 0)")
    p.add_argument("--src", help="one end of the link (default: every link)")
    p.add_argument("--dst", help="the other end")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import httpx

    if not (math.isfinite(args.gbps) and args.gbps > 0):
        raise UsageError(f"--gbps must be a positive number, got {args.gbps}")
    body = {"gbps": args.gbps, "src": args.src, "dst": args.dst}
    verify: Any = True
    if args.pki:
        from prfaas.security.tls import OPERATOR, Pki

        verify = Pki(Path(args.pki), OPERATOR).client  # mutual TLS as the operator
    try:
        with httpx.Client(verify=verify, timeout=30) as client:
            resp = client.post(f"{args.url.rstrip('/')}/internal/link", json=body,
                               extensions={"sni_hostname": "router"})
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach the router at {args.url}: {exc}") from None
    if resp.status_code != 200:
        try:
            why = resp.json().get("error", resp.text)
        except ValueError:
            why = resp.text
        raise UsageError(f"the router refused: {why}")
    for link in resp.json()["links"]:
        print(json.dumps(link))
    return 0
