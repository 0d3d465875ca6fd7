"""`prfaas netns`: check what WAN emulation this kernel supports (namespaces, tbf, netem)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from prfaas.errors import UsageError


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="probe network-namespace WAN emulation (veth, tc tbf, netem) and clean up",
        description=(
            "Builds two network namespaces joined by a veth pair, shapes the link with tc tbf, "
            "tries a netem loss qdisc, reports what worked, and always deletes what it built. "
            "The benchmark itself is `prfaas transfer-bench --link-gbps G --rtt-ms R --netns`."
        ),
        epilog="example: sudo prfaas netns --rate-gbps 1 --loss 0.1",
    )
    p.add_argument("--rate-gbps", type=float, default=1.0, help="tbf rate to apply")
    p.add_argument("--loss", type=float, default=0.1, metavar="PCT", help="netem loss to try")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import subprocess

    from prfaas.transfer.netns import NetnsLink, netns_missing

    reason = netns_missing()
    if reason:
        raise UsageError(reason)
    if args.rate_gbps <= 0:
        raise UsageError("--rate-gbps must be > 0")
    with NetnsLink(args.rate_gbps, loss_pct=args.loss) as link:
        show = [*link.exec_prefix("a"), "tc", "qdisc", "show", "dev", link.dev_a]
        qdisc = subprocess.run(show, capture_output=True, text=True).stdout.strip()
        report = {
            "namespaces": [link.ns_a, link.ns_b],
            "addresses": [link.addr_a, link.addr_b],
            "tbf": "tbf" in qdisc,
            "qdisc": qdisc,
            "netem": link.netem_error is None,
            "netem_error": link.netem_error,
            "commands": link.commands,
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"namespaces {report['namespaces']} with {report['addresses']}: built and removed")
    print(f"tbf {args.rate_gbps} Gbit/s: {'works' if report['tbf'] else 'FAILED'} ({qdisc})")
    if report["netem"]:
        print(f"netem loss {args.loss}%: works")
    else:
        print(f"netem: NOT available on this kernel: {report['netem_error']}")
        print("  -> delay comes from a userspace relay; loss cannot be emulated here")
    return 0
