"""``opencompute-exporter``: one CLI, one subcommand per exporter or tool.

Subcommand modules are imported only when chosen, and they import wandb/bittensor only when
they need them, so ``--help`` stays fast.

A subcommand module provides ``flags() -> FlagSet`` and ``run(values: dict) -> int``.

Command-line mistakes get one line, not a page of usage: an unknown flag or command is named
with its closest match and a pointer to ``--help`` (what kingpin does for node_exporter).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

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
VERSION = f"opencompute-exporters {__version__}"


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line with a did-you-mean, then exit 2."""

    def error(self, message: str) -> NoReturn:
        print(
            f"{self.prog}: {explain(message, self._flag_names())} (see '{self.prog} --help')", file=sys.stderr
        )
        raise SystemExit(EXIT_CONFIG)

    def _flag_names(self) -> list[str]:
        return [opt for action in self._actions for opt in action.option_strings]


def explain(message: str, known: Sequence[str]) -> str:
    """Rewrite argparse's error text in words, suggesting the closest known flag or command."""
    if message.startswith("unrecognized arguments: "):
        unknown = message.removeprefix("unrecognized arguments: ").split()
        first = next((u for u in unknown if u.startswith("-")), unknown[0])
        return f"unknown flag {first.split('=', 1)[0]!r}{did_you_mean(first.split('=', 1)[0], known)}"
    if message.startswith("argument COMMAND: invalid choice: "):
        given = message.split("'")[1] if "'" in message else message
        return f"unknown command {given!r}{did_you_mean(given, list(SUBCOMMANDS))}"
    if message.endswith("expected one argument"):
        flag = message.removeprefix("argument ").split(":", 1)[0]
        return f"{flag} needs a value, e.g. {flag}=VALUE"
    return message


def did_you_mean(given: str, known: Sequence[str]) -> str:
    """``; did you mean '--x'?`` for the closest known name, or nothing when none is close."""
    close = difflib.get_close_matches(given, known, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _top_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="opencompute-exporter",
        description="Prometheus exporters for the NI Compute Subnet (Bittensor subnet 27).",
    )
    parser.add_argument("--version", action="version", version=VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def command_parser(name: str, module: object) -> argparse.ArgumentParser:
    """The parser of one subcommand: its flags, ``--version``, and its epilog."""
    epilog = "Every flag can also be set with the environment variable shown in its help."
    extra_epilog = getattr(module, "HELP_EPILOG", None)  # e.g. a table of exit codes
    parser = OneLineParser(
        prog=f"opencompute-exporter {name}",
        description=SUBCOMMANDS[name][1],
        epilog=f"{extra_epilog}\n\n{epilog}" if extra_epilog else epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=VERSION, help="Print the version and exit.")
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
    parser = command_parser(name, module)
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
