"""``opencompute-exporter``: one CLI, one subcommand per exporter or tool.

Subcommand modules are imported only when chosen, and they import wandb/bittensor only when
they need them, so ``--help`` stays fast.

A subcommand module provides ``flags() -> FlagSet`` and ``run(values: dict) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from exporters import __version__
from exporters.core.config import ConfigError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "miner": ("exporters.miner.cli", "Miner GPU and host exporter (NVML, psutil), port 9927."),
    "validator": ("exporters.validator.cli", "Validator proof-of-GPU exporter over ComputeDb, port 9928."),
    "network": ("exporters.network.cli", "Network-wide verified view of all runs, port 9929."),
    "register-prometheus": ("exporters.registrar", "Submit the serve_prometheus extrinsic on chain."),
    "generate": ("exporters.generate", "Write dashboards, alert rules and Kubernetes objects."),
    "demo": ("exporters.demo", "Run a simulated subnet with all exporters (and Prometheus)."),
}

EXIT_CONFIG = 2


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opencompute-exporter",
        description="Prometheus exporters for the NI Compute Subnet (Bittensor subnet 27).",
    )
    parser.add_argument("--version", action="version", version=f"opencompute-exporters {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not args or args[0] not in SUBCOMMANDS:
        ns = top.parse_args(args)  # prints help/version or an error and exits
        if ns.command is None:
            top.print_help()
            return EXIT_CONFIG
    name = args[0]
    module = importlib.import_module(SUBCOMMANDS[name][0])
    flagset = module.flags()
    epilog = "Every flag can also be set with the environment variable shown in its help."
    extra_epilog = getattr(module, "HELP_EPILOG", None)  # e.g. a table of exit codes
    parser = argparse.ArgumentParser(
        prog=f"opencompute-exporter {name}",
        description=SUBCOMMANDS[name][1],
        epilog=f"{extra_epilog}\n\n{epilog}" if extra_epilog else epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flagset.install(parser)
    ns = parser.parse_args(args[1:])
    try:
        values = flagset.resolve(ns)
        return int(module.run(values))
    except ConfigError as exc:
        print(f"opencompute-exporter {name}: invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
