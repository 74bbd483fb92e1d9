"""Prometheus-style flags, each mirrored by an ``OPENCOMPUTE_*`` environment variable.

Why not plain argparse types: argparse stops at the first bad value, and operators editing a
systemd EnvironmentFile want every problem reported at once. So flags are parsed as strings,
then resolved (command line > environment > default) and converted in one pass that collects
all errors into a single :class:`ConfigError`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.core.errors import ConfigError
from exporters.core.webconfig import load_web_config

ENV_PREFIX = "OPENCOMPUTE_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("logfmt", "json")


def dest_of(name: str) -> str:
    """``web.listen-address`` -> ``web_listen_address`` (the attribute name)."""
    return name.replace(".", "_").replace("-", "_")


def env_of(name: str) -> str:
    """``web.listen-address`` -> ``OPENCOMPUTE_WEB_LISTEN_ADDRESS``."""
    return ENV_PREFIX + dest_of(name).upper()


def parse_bool(text: str) -> bool:
    """Parse the usual spellings of a boolean; raise ValueError on anything else."""
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise FlagValueError(f"{text!r} is not a boolean; expected true or false, e.g. true")


MAX_DURATION = 30 * 86400.0
"""The longest duration a flag takes (30 days): anything longer is a typo, not an interval."""
_DURATION_HINT = "use e.g. 30s, 5m, 1h"
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


class FlagValueError(ValueError):
    """A bad flag value whose message already quotes the value, in words a person reads.

    :meth:`FlagSet.resolve` reports it as ``--flag: <message>`` instead of repeating the value.
    """


def parse_duration(text: str) -> float:
    """A Prometheus-style duration (``30s``, ``5m``, ``1h30m``, ``250ms``) or plain seconds, in seconds.

    NaN, infinity, negative values and anything over 30 days are refused: an interval of NaN
    busy-loops and one of 1e10 seconds overflows ``Event.wait``; both are typos, not intent.
    """
    t = text.strip().lower()
    value = _duration_seconds(t)
    if value is None:
        raise FlagValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    if math.isnan(value):
        raise FlagValueError(f"{text!r} is not a number; {_DURATION_HINT}")
    if math.isinf(value):
        raise FlagValueError(f"{text!r} is infinite; {_DURATION_HINT}")
    if value < 0:
        raise FlagValueError(f"{text!r} is negative; {_DURATION_HINT}")
    if value > MAX_DURATION:
        raise FlagValueError(f"{text!r} is longer than 30 days; {_DURATION_HINT}")
    return value


def _duration_seconds(t: str) -> float | None:
    sign, body = (-1.0, t[1:]) if t.startswith("-") else (1.0, t)
    if _DURATION.fullmatch(body):
        return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(body))
    try:
        return float(t) + 0.0  # -0 is 0
    except ValueError:
        return None


def positive_duration(text: str) -> float:
    """A duration that must be greater than zero (intervals, timeouts)."""
    value = parse_duration(text)
    if value <= 0:
        raise FlagValueError(f"{text!r} is zero; it must be positive; {_DURATION_HINT}")
    return value


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def writable_file(text: str) -> str:
    """A file path the process can create or write (``~`` expanded), checked at startup.

    Missing parent directories are fine when they can be created under a writable ancestor, as
    the stores create them; a directory, or a path under a file or a read-only directory, is not.
    """
    path = Path(os.path.expanduser(text.strip()))
    if not text.strip():
        raise FlagValueError("an empty path; give a file path")
    if path.is_dir():
        raise FlagValueError(f"{str(path)!r} is a directory; give a file path")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise FlagValueError(f"{str(path)!r} is not writable by this user")
        return str(path)
    ancestor = _nearest_existing(path.parent)
    if not ancestor.is_dir():
        raise FlagValueError(f"{str(path)!r} cannot be created: {str(ancestor)!r} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise FlagValueError(f"{str(path)!r} cannot be created: {str(ancestor)!r} is not writable")
    return str(path)


def existing_file(text: str) -> str:
    """A file that was asked for and so must exist and be readable now (``~`` expanded)."""
    path = Path(os.path.expanduser(text.strip()))
    if not path.exists():
        raise FlagValueError(f"{str(path)!r} does not exist")
    if not path.is_file():
        raise FlagValueError(f"{str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise FlagValueError(f"{str(path)!r} is not readable by this user")
    return str(path)


def parse_listen_address(text: str) -> tuple[str, int]:
    """Parse ``host:port`` / ``:port`` / ``[::1]:port`` into (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port_s = rest.lstrip(":")
    else:
        host, sep, port_s = t.rpartition(":")
        if not sep:
            raise FlagValueError(
                f"{text!r} is not host:port; expected e.g. 0.0.0.0:9927, :9927 or [::1]:9927"
            )
    example = "e.g. 0.0.0.0:9927, :9927 or [::1]:9927"
    try:
        port = int(port_s)
    except ValueError:
        raise FlagValueError(f"{text!r} has no port number; expected host:port, {example}") from None
    if not 0 <= port <= 65535:
        raise FlagValueError(f"port {port} in {text!r} is out of range 0..65535; {example}")
    return (host or "0.0.0.0", port)


def whole_number(text: str, expected: str, example: str) -> int:
    """``int(text)`` with an error a person reads: what was given, what is expected, an example."""
    try:
        return int(text.strip())
    except ValueError:
        raise FlagValueError(f"{text!r} is not a whole number; expected {expected}, e.g. {example}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = whole_number(text, "a whole number of 1 or more", "4")
    if value < 1:
        raise FlagValueError(f"{text!r} is less than 1; expected a whole number of 1 or more, e.g. 4")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (0 usually means "no limit")."""
    try:
        value = int(text)
    except ValueError:
        raise FlagValueError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise FlagValueError(f"{text!r} is negative; use 0 for no limit")
    return value


def parse_netuid(text: str) -> int:
    """A subnet netuid (a u16 on chain)."""
    value = whole_number(text, "a netuid 0..65535", "27 (finney)")
    if not 0 <= value <= 65535:
        raise FlagValueError(f"{text!r} is out of range; expected a netuid 0..65535, e.g. 27 (finney)")
    return value


def format_duration(seconds: float) -> str:
    """Seconds as a person writes a duration: 900 -> ``15m``, 5400 -> ``1h30m``, 0.25 -> ``250ms``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    rest = round(seconds)
    if abs(seconds - rest) > 1e-9:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def format_value(value: Any, *, duration: bool = False) -> str | None:
    """A resolved flag value written back the way it is typed on the command line (None: unset)."""
    if value is None or value == () or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if duration and isinstance(value, int | float):
        return format_duration(float(value))
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[1], int)
        and isinstance(value[0], str)
    ):
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def is_duration_flag(flag: Flag) -> bool:
    """Duration flags say so in their metavar or converter name (``DURATION``, ``*_duration``)."""
    return flag.metavar == "DURATION" or "duration" in getattr(flag.convert, "__name__", "")


def format_default(flag: Flag) -> str | None:
    """How ``--help`` shows a flag's default: ``0.0.0.0:9927``, ``15m``, ``true``; None when unset."""
    if flag.shown is not None:
        return flag.shown
    return format_value(flag.default, duration=is_duration_flag(flag))


def choice(options: Iterable[str]) -> Callable[[str], str]:
    """A converter accepting one of ``options`` (case-insensitive, surrounding space ignored)."""
    allowed = tuple(options)

    def convert(text: str) -> str:
        low = text.strip().lower()
        if low not in allowed:
            raise FlagValueError(f"{text!r} is not one of {', '.join(allowed)}; e.g. {allowed[0]}")
        return low

    return convert


@dataclass(frozen=True)
class Flag:
    """One flag: ``--name`` on the command line, ``OPENCOMPUTE_NAME`` in the environment."""

    name: str
    help: str
    default: Any = None
    convert: Callable[[str], Any] = str
    is_bool: bool = False
    required: bool = False
    metavar: str | None = None

    shown: str | None = None  # how --help writes the default, where the automatic rendering is wrong

    @property
    def dest(self) -> str:
        return dest_of(self.name)

    @property
    def env(self) -> str:
        return env_of(self.name)


@dataclass
class FlagSet:
    """The flags of one subcommand, added to an argparse parser and resolved together."""

    flags: list[Flag] = field(default_factory=list)

    def add(self, *flags: Flag) -> None:
        self.flags.extend(flags)

    def install(self, parser: argparse.ArgumentParser) -> None:
        """Declare every flag on ``parser`` with default None so env/defaults apply later."""
        for f in self.flags:
            shown = format_default(f)
            help_text = f"{f.help} (env {f.env}; default {shown})" if shown else f"{f.help} (env {f.env})"
            if f.is_bool:
                parser.add_argument(
                    f"--{f.name}",
                    dest=f.dest,
                    action=argparse.BooleanOptionalAction,
                    default=None,
                    help=help_text,
                )
            else:
                parser.add_argument(
                    f"--{f.name}",
                    dest=f.dest,
                    default=None,
                    metavar=f.metavar or ("DURATION" if is_duration_flag(f) else "VALUE"),
                    help=help_text,
                )

    def resolve(
        self, namespace: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Return {dest: value}; raise ConfigError listing every invalid or missing value."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in self.flags:
            raw = getattr(namespace, f.dest, None)
            source = f"--{f.name}"
            if raw is None and f.env in env:
                raw = env[f.env]
                source = f.env
            if raw is None:
                if f.required:
                    problems.append(f"--{f.name} (or {f.env}) is required")
                values[f.dest] = f.default
                continue
            if isinstance(raw, bool):
                values[f.dest] = raw
                continue
            try:
                values[f.dest] = parse_bool(raw) if f.is_bool else f.convert(raw)
            except ConfigError as exc:
                problems.extend(exc.problems)
            except FlagValueError as exc:
                problems.append(f"{source}: {exc}")
            except (ValueError, TypeError) as exc:
                problems.append(f"{source}={raw!r}: {exc}")
        if problems:
            raise ConfigError(problems)
        return values


def web_flags(default_port: int) -> list[Flag]:
    """The node_exporter-style ``--web.*`` flags every exporter takes."""
    return [
        Flag(
            "web.listen-address",
            "Address to listen on for the web interface and telemetry.",
            default=parse_listen_address(f":{default_port}"),
            convert=parse_listen_address,
            metavar="HOST:PORT",
        ),
        Flag("web.telemetry-path", "Path under which to expose metrics.", default="/metrics", convert=_path),
        Flag(
            "web.max-requests",
            "Maximum number of parallel scrape requests (beyond it: 503). Use 0 to disable.",
            default=40,
            convert=non_negative_int,
            metavar="N",
        ),
        Flag(
            "web.config.file",
            "Path to a Prometheus exporter-toolkit web config (TLS, basic auth).",
            default=None,
            convert=_web_config,
            metavar="FILE",
        ),
        *log_flags(),
    ]


def log_flags() -> list[Flag]:
    """``--log.level`` and ``--log.format``: every command takes them, the demo included."""
    return [
        Flag(
            "log.level", "Log level: debug, info, warning, error.", default="info", convert=choice(LOG_LEVELS)
        ),
        Flag("log.format", "Log format: logfmt or json.", default="logfmt", convert=choice(LOG_FORMATS)),
    ]


def collector_flags(collectors: Iterable[tuple[str, bool, str]]) -> list[Flag]:
    """``--collector.<name>`` / ``--no-collector.<name>`` toggles for (name, default, help)."""
    return [
        Flag(f"collector.{name}", f"Enable the {name} collector: {text}", default=on, is_bool=True)
        for name, on, text in collectors
    ]


def enabled_collectors(
    values: Mapping[str, Any], collectors: Iterable[tuple[str, bool, str]]
) -> dict[str, bool]:
    """name -> whether it runs, read back from the values of :func:`collector_flags` (default if absent)."""
    return {name: bool(values.get(dest_of(f"collector.{name}"), on)) for name, on, _ in collectors}


def _web_config(text: str) -> Any:
    # Validated while flags resolve, so its problems are reported with all the others.
    return load_web_config(text)


def _path(text: str) -> str:
    if not text.startswith("/") or text == "/":
        raise FlagValueError(f"{text!r} must start with '/' and not be '/'; e.g. /metrics")
    return text
