"""The `prfaas` command line: one entry point, one module per subcommand under prfaas.commands.

Environment variables are read here and nowhere else; they become explicit arguments below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from prfaas import __version__
from prfaas.errors import PrfaasError
from prfaas.workload.traces import default_traces_dir

# Subcommand name -> module under prfaas.commands. Modules import heavy dependencies lazily
# inside run(), so `prfaas --help` and `prfaas plan` stay fast.
COMMANDS: dict[str, str] = {
    "kv": "kv",
    "plan": "plan",
    "simulate": "simulate",
    "sweep": "sweep",
    "transfer-bench": "transfer_bench",
    "netns": "netns",
    "up": "up",
    "link": "link",
    "bench": "bench",
    "worker": "worker",
    "router": "router",
    "wan": "wan",
    "certs": "certs",
}



class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line message (its default too, made explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="prfaas",
        description=(
            "Prefill-as-a-Service: plan, simulate, deploy and benchmark cross-datacenter "
            "prefill/decode disaggregation for hybrid-attention LLMs."
        ),
        epilog="Run `prfaas COMMAND --help` for each command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"prfaas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"prfaas.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"prfaas.commands.{module_name}":
                continue  # command not built in this checkout
            raise
        module.add_parser(sub, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    args.traces_dir = default_traces_dir()
    try:
        return int(args.run(args) or 0)
    except PrfaasError as exc:
        print(f"prfaas {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"prfaas {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
