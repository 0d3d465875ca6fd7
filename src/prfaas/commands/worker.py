"""`prfaas worker --node NAME`: one worker node of a deployment, on any host.

`prfaas up` starts these on one machine; on several hosts each node runs this command on its own
host (the file gives its bind `host` and its `advertise` address). `--router` / `--wan` run the
other processes (`prfaas router` and `prfaas wan` are the documented front doors for those).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from prfaas import aio
from prfaas.errors import UsageError


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name,
        help="run one worker node of a deployment (standalone, any host)",
        description="Run one worker node (--node NAME) of a deployment file on this host: it "
        "binds the node's `host` from the file (control and KV transfer listeners), is "
        "reached at its `advertise` address, and registers in the cluster's etcd. `prfaas up` "
        "starts every process on one machine; `prfaas router` and `prfaas wan` run the others "
        "standalone.",
        epilog="example (on the host 10.0.0.7 that the file gives pd-d0): prfaas worker "
        "--config dep.toml --node pd-d0 --etcd https://10.0.0.1:2379 "
        "--secret-file secret.txt --pki pki   (the cluster's etcd; pki/ from `prfaas certs`; "
        "secret.txt: the cluster's KV-transfer secret, never on a command line)",
    )
    p.add_argument("--config", required=True, help="deployment file (TOML)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--node", action="append", help="run this worker node of the deployment; "
                     "repeat it to run several nodes in this one process (each keeps its own "
                     "listeners, identity and etcd lease: a host of many small nodes)")
    who.add_argument("--router", action="store_true", help="run the router")
    who.add_argument("--wan", action="store_true", help="run the WAN emulator (link relays)")
    p.add_argument("--etcd", default="", help="the cluster's etcd client URL (https with a PKI; "
                   "required with --node and --router)")
    p.add_argument("--name", default="", help="this router replica's name in etcd "
                   "(default: router-HOST-PID)")
    p.add_argument("--wan-url", default="", help="the WAN emulator (with --router)")
    p.add_argument(
        "--url",
        default="",
        help="listen address of --router / --wan (default: the file's router host and port)",
    )
    p.add_argument(
        "--control-port", type=int, help="control listener port of --router (default: the file's)"
    )
    p.add_argument(
        "--host", default="", help="--router / --wan: bind and advertise this address instead "
        "of the file's [router] ones (a replica or emulator on its own address)"
    )
    p.add_argument(
        "--state-file", type=Path, help="--wan: where it records its relays, to reopen them "
        "on the same ports after a restart"
    )
    p.add_argument("--policy", help="run the deployment under this policy (its [variant.*])")
    p.add_argument("--secret-file", type=Path, help="KV-transfer secret (default: the file's)")
    p.add_argument(
        "--pki",
        type=Path,
        help="cluster PKI folder (`prfaas certs`): ca.pem and this process's NAME.pem/.key; "
        "without it the control network is plain HTTP (only for [security] insecure = true)",
    )
    p.add_argument("--ready-file", type=Path, help="write the process's address here when ready")
    p.add_argument("--standby", action="store_true", help="(supervisor) --router: load, then "
                   "wait for a line on stdin before starting (a warm spare)")
    p.add_argument(
        "--fault-hooks", action="store_true", help="enable POST /fault (tests; nodes and WAN)"
    )
    p.add_argument("--log-level", default="WARNING", help="Python log level (default WARNING)")
    p.set_defaults(run=run)


def as_process(args: argparse.Namespace, *, router: bool = False, wan: bool = False,
               url: str = "") -> argparse.Namespace:
    """The `prfaas worker` arguments for `prfaas router` / `prfaas wan` (same process code)."""
    defaults = {"node": None, "etcd": "", "name": "", "wan_url": "", "secret_file": None,
                "fault_hooks": False, "control_port": None, "state_file": None, "host": "",
                "standby": False}
    merged = {**defaults, **vars(args), "router": router, "wan": wan, "url": url}
    return argparse.Namespace(**merged)


def _secret(args: argparse.Namespace) -> bytes:
    from prfaas.deploy.config import load_deployment

    if args.secret_file is not None:
        try:
            secret: bytes = args.secret_file.read_bytes().strip()
            return secret
        except OSError as exc:
            raise UsageError(f"cannot read --secret-file {args.secret_file}: {exc}") from None
    cfg = load_deployment(args.config)
    if cfg.secret is None:
        raise UsageError("no transfer secret: pass --secret-file or set deployment.secret")
    return cfg.secret.encode()


def _port(url: str) -> int | None:
    from urllib.parse import urlparse

    if not url:
        return None
    try:
        port = urlparse(url).port
    except ValueError:
        port = None
    if port is None:
        raise UsageError(f"--url must be http://HOST:PORT, got {url!r}")
    return port


def run(args: argparse.Namespace) -> int:
    from prfaas.deploy.config import load_deployment

    name = (args.node[0] if len(args.node) == 1 else "workers") if args.node else (
        "router" if args.router else "wan")
    logging.basicConfig(
        level=args.log_level.upper(), format=f"%(asctime)s {name} %(levelname)s %(message)s"
    )
    cfg = load_deployment(args.config)
    if args.policy:
        cfg = cfg.with_policy(args.policy)
    pki = _pki(args, cfg, name) if name != "workers" else None  # several nodes: one each
    if args.router:
        from prfaas.router.app import run_router

        if args.standby and not _stand_by():
            return 0  # dismissed: the supervisor stopped (or died) before needing it
        wan_url = args.wan_url.rstrip("/")
        etcd = _etcd(args)
        aio.run(
            run_router(cfg, args.ready_file, wan_url, _port(args.url), pki, etcd, args.name,
                       args.control_port, args.host)
        )
        return 0
    if args.wan:
        from prfaas.worker.wan_app import run_wan

        aio.run(
            run_wan(cfg, args.ready_file, _port(args.url), pki, args.fault_hooks, args.state_file,
                    args.host)
        )
        return 0
    etcd = _etcd(args)
    names = list(dict.fromkeys(args.node))
    for node in names:
        cfg.node(node)  # a clear error for an unknown node name
    if len(names) > 1:
        from prfaas.worker.multi import run_workers

        pkis = {node: _pki(args, cfg, node) for node in names}
        aio.run(run_workers(cfg, names, etcd, _secret(args), args.ready_file,
                            args.fault_hooks, pkis))
        return 0
    from prfaas.worker.app import run_worker

    aio.run(
        run_worker(cfg, names[0], etcd, _secret(args), args.ready_file, args.fault_hooks, pki)
    )
    return 0


def _stand_by() -> bool:
    """A warm spare: everything a router start imports is loaded; wait for the supervisor's word
    (a line on stdin) to start, so a crashed router is replaced without the import time.
    False when stdin closes first."""
    import sys

    import prfaas.router.cluster_members
    import prfaas.router.control
    import prfaas.security.asgi
    import prfaas.server.app
    import prfaas.server.auth
    import prfaas.server.metrics
    import prfaas.worker.app  # noqa: F401

    return bool(sys.stdin.readline().strip())


def _etcd(args: argparse.Namespace) -> str:
    if not args.etcd:
        raise UsageError("--etcd URL is required with --node and --router (the cluster's etcd)")
    return str(args.etcd).rstrip("/")


def _pki(args: argparse.Namespace, cfg: Any, name: str) -> Any:
    """This process's TLS identity; None (plain HTTP) only if the file says insecure = true."""
    from prfaas.security.tls import Pki

    folder = args.pki or (Path(cfg.security.pki) if cfg.security.pki else None)
    if folder is None:
        if not cfg.security.insecure:
            raise UsageError("no cluster PKI: pass --pki DIR (see `prfaas certs`), or set "
                             "[security] insecure = true for a plain-HTTP control network")
        logging.getLogger(__name__).warning("insecure mode: control network is plain HTTP")
        return None
    return Pki(folder, name)
