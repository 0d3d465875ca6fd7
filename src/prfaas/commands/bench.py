"""`prfaas bench`: open-loop load against an OpenAI-compatible URL, or --compare across policies."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prfaas.errors import UsageError

EXAMPLES = """examples:
  prfaas bench --url http://127.0.0.1:8000 --trace kimi-conversation --speedup 20 \\
      --limit 500 --tokens-per-block 16 --duration 60
  prfaas bench --url http://127.0.0.1:8000 --workload paper --rate 2 --length-scale 0.01 \\
      --duration 30 --json
  prfaas bench --compare homogeneous,naive,prfaas --config examples/paper-emulated.toml \\
      --workload paper --rate 4 --duration 60 --plot out/compare.png
"""


def add_parser(subparsers: Any, name: str) -> None:
    p = subparsers.add_parser(
        name, help="open-loop load generator (TTFT/TPOT/throughput) against a URL",
        description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="server base URL, e.g. http://127.0.0.1:8000; several, "
                   "comma-separated (router replicas): a request whose connection fails before "
                   "any reply goes to the next one")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--trace", type=Path, help="a named trace (kimi-conversation) or a "
                     "Mooncake-format trace file (.jsonl or .jsonl.gz)")
    src.add_argument("--workload", choices=["paper"], help="the paper's synthetic workload")
    p.add_argument("--speedup", type=float, default=1.0, help="trace time compression (default 1)")
    p.add_argument("--limit", type=int, help="use only the first N trace requests")
    p.add_argument("--rate", type=float, help="requests/s for --workload paper")
    p.add_argument("--arrival", choices=["uniform", "poisson"], default="uniform",
                   help="arrival process for --workload paper (the paper: uniform)")
    p.add_argument("--length-scale", type=float, default=1.0,
                   help="scale the paper workload's input and output lengths (default 1)")
    p.add_argument("--duration", type=float, required=True, help="send window in seconds")
    p.add_argument("--seed", type=int, default=0, help="RNG seed of the workload (default 0)")
    _add_shaping(p)
    p.add_argument("--endpoint", choices=["completions", "chat"], default="completions")
    p.add_argument("--model", help="model name (default: the first one GET /v1/models lists)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout (s)")
    p.add_argument("--no-ignore-eos", dest="ignore_eos", action="store_false",
                   help="let the model stop at EOS (default: ask for exactly max_tokens)")
    p.add_argument("--tag-requests", action="store_true",
                   help="send each request's plan index as `seed` so the router's decision log "
                        "(GET /internal/decisions) can be joined to trace rows")
    p.add_argument("--retry-429", action="store_true",
                   help="honour Retry-After: wait and resend a request shed with 429 (within "
                        "--timeout); without it a 429 is the request's outcome (num_shed)")
    p.add_argument("--resume-streams", action="store_true",
                   help="ask for token ids and resend a stream cut after its first token with "
                        "the ids received (`resume_token_ids`), stitching the pieces; resumes "
                        "are counted (num_resumed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (stable keys)")
    p.add_argument("--save-result", type=Path, metavar="PATH",
                   help="also write the run as `vllm bench serve --save-result` JSON")
    p.add_argument("--result-label", default="prfaas", help="`label` in --save-result JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--compare", metavar="POLICIES", help="comma list; needs --config")
    p.add_argument("--config", type=Path, help="deployment file for --compare")
    p.add_argument("--plot", type=Path, help="PNG of the --compare results")
    p.set_defaults(run=run)


def _add_shaping(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokens-per-block", type=int, default=512,
                   help="synthesised tokens per trace block; scales trace inputs by B/512")
    p.add_argument("--max-input-tokens", type=int, help="cap every prompt at N tokens")
    p.add_argument("--output-tokens", type=int, help="fixed output length (max_tokens)")
    p.add_argument("--max-output-tokens", type=int, help="cap every output at N tokens")


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"--{name} must be > 0, got {value}")


def _resolve_trace(path: Path | None, traces_dir: Path | None) -> Path | None:
    from prfaas.workload.traces import resolve_trace

    return None if path is None else resolve_trace(path, traces_dir=traces_dir)


def settings_from_args(args: argparse.Namespace) -> Any:
    from prfaas.bench.run import BenchSettings
    from prfaas.bench.workload import Shaping

    for name in ("tokens_per_block", "max_input_tokens", "output_tokens", "max_output_tokens",
                 "limit", "timeout", "rate"):
        _positive(name.replace("_", "-"), getattr(args, name))
    if args.trace is None and args.workload is None:
        raise UsageError("give a workload: --trace FILE or --workload paper --rate R")
    shaping = Shaping(
        tokens_per_block=args.tokens_per_block, max_input_tokens=args.max_input_tokens,
        output_tokens=args.output_tokens, max_output_tokens=args.max_output_tokens)
    trace = _resolve_trace(args.trace, getattr(args, "traces_dir", None))
    return BenchSettings(
        duration_s=args.duration, trace=trace,
        speedup=args.speedup, limit=args.limit, workload=args.workload, rate_rps=args.rate,
        arrival=args.arrival, length_scale=args.length_scale, seed=args.seed,
        endpoint=args.endpoint, model=args.model, timeout_s=args.timeout,
        ignore_eos=args.ignore_eos, shaping=shaping, tag_requests=args.tag_requests,
        retry_429=args.retry_429, resume_streams=args.resume_streams)


def default_starter() -> Any:
    """start_deployment(config_path, policy) -> (url, stop) of the live deployment (`prfaas up`)."""
    for module_name in ("prfaas.deploy.supervisor", "prfaas.commands.up"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        starter = getattr(module, "start_deployment", None)
        if starter is not None:
            return starter
    raise UsageError("--compare needs the live deployment (prfaas up), not built in this checkout")


@contextlib.contextmanager
def deployment_file(name: Path | None) -> Iterator[Path]:
    """The --config path, or an embedded example named like `prfaas up --config` accepts."""
    try:
        resolve = importlib.import_module("prfaas.commands.up").config_file
    except (ModuleNotFoundError, AttributeError):
        resolve = None
    if resolve is not None and name is not None:
        with resolve(str(name)) as path:
            yield Path(path)
        return
    if name is None or not name.is_file():
        raise UsageError(f"--compare needs --config FILE (got {name})")
    yield name


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from prfaas.bench.report import print_report

    settings = settings_from_args(args)
    stderr = Console(stderr=True)
    if args.compare:
        return _run_compare(args, settings, stderr)
    if args.plot or args.config:
        raise UsageError("--config and --plot go with --compare")
    if not args.url:
        raise UsageError("--url is required (or use --compare with --config)")
    from prfaas.bench.run import run_bench

    kept: list[Any] = []
    report = run_bench(args.url, settings, console=stderr, progress=args.progress, keep=kept)
    if args.save_result is not None:
        _save_vllm_result(args.save_result, report, kept, args.result_label)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(report, Console())
    if report["num_ok"] == 0:
        stderr.print("prfaas bench: no request succeeded")
        return 1
    return 0


def _save_vllm_result(path: Path, report: dict[str, Any], kept: list[Any], label: str) -> None:
    from prfaas.bench.vllm_format import vllm_result

    try:
        path.write_text(json.dumps(vllm_result(report, kept, label), indent=2))
    except OSError as exc:
        raise UsageError(f"cannot write --save-result {path}: {exc}") from None


def _run_compare(args: argparse.Namespace, settings: Any, console: Any) -> int:
    from rich.console import Console

    from prfaas.bench.compare import parse_policies, run_compare

    if args.url:
        raise UsageError("--compare starts its own deployments; drop --url")
    if args.config is None:
        raise UsageError("--compare needs --config FILE")
    policies, starter = parse_policies(args.compare), default_starter()
    out = console if args.json else Console()  # the table goes to stdout unless --json does
    with deployment_file(args.config) as config:
        rows = run_compare(policies, config, starter, settings, console=out,
                           plot_path=args.plot, progress=args.progress)
    if args.json:
        json.dump({policy: report for policy, report in rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
