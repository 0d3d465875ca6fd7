"""`prfaas certs init|issue`: a cluster CA and per-identity certificates for multi-host clusters.

`prfaas up` makes a throwaway CA per run by itself; this is for nodes placed by hand (set
`[security] pki = "DIR"` in the deployment file; copy DIR/ca.pem and each NAME.pem/.key to the
host that runs NAME).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="create a cluster CA and node certificates (mutual TLS of the control network)",
        description="init: write a new CA (ca.pem, ca.key) into DIR. issue: sign NAME.pem/NAME.key "
        "with DIR's CA for each NAME (a node name, router, wan, operator, or etcd: the embedded "
        "etcd's server certificate, also valid for its IP addresses). Keys are 0600.",
        epilog="example: prfaas certs init --dir pki && prfaas certs issue router wan operator "
        "prfaas-p0 pd-d0 --dir pki (or: prfaas certs issue --config dep.toml --dir pki)",
    )
    p.add_argument("words", nargs="+", metavar="init | issue NAME...",
                   help="init, or issue followed by the identities to issue")
    p.add_argument("--dir", required=True, type=Path, help="the PKI folder")
    p.add_argument("--config", help="issue: one certificate per identity of this deployment")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prfaas.errors import UsageError
    from prfaas.security.certs import init_ca, issue

    action, names = args.words[0], list(args.words[1:])
    if action not in ("init", "issue") or (action == "init" and names):
        raise UsageError(
            "usage: prfaas certs init --dir DIR | prfaas certs issue NAME... --dir DIR"
        )
    if action == "init":
        if (args.dir / "ca.key").exists():
            raise UsageError(f"{args.dir} already holds a CA (ca.key); refusing to overwrite it")
        print(init_ca(args.dir))
        return 0
    ips: dict[str, tuple[str, ...]] = {"etcd": ("127.0.0.1",)}
    if args.config:
        from prfaas.deploy.config import load_deployment
        from prfaas.deploy.launch import etcd_ips

        cfg = load_deployment(args.config)
        names += ["router", "wan", "operator", "etcd", *(n.name for n in cfg.nodes)]
        ips["etcd"] = etcd_ips(cfg)  # etcd's gateway dials its own address and checks it
    if not names:
        raise UsageError("issue needs identity names or --config")
    for name in dict.fromkeys(names):
        print(issue(args.dir, name, ips.get(name, ())))
    return 0
