"""Value parsing for ComputeDb rows: one bad value is counted and skipped, never fatal.

The validator writes what its code wrote over the versions (text timestamps in two formats,
JSON specs, booleans as text or int); each parser accepts exactly those shapes and raises
``ValueError`` otherwise, and :class:`InvalidValues` counts what was skipped per column.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from exporters.validator.records import (
    GpuSpecs,
)

# 0..MAX_UID are counted as invalid instead of becoming label values.
MAX_UID = 4095
# Longest GPU name kept as a label value; longer ones are cut (NVML names are < 96 bytes).
MAX_LABEL_LENGTH = 128


class InvalidValues:
    """Counts values that could not be used, by (table, column)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, table: str, column: str) -> None:
        self.counts[(table, column)] += 1


def parse_timestamp(value: Any, naive_tz: tzinfo | None) -> float:
    """Unix seconds from a ComputeDb timestamp; raise ValueError when it is not one.

    ``pog_stats``/``stats`` hold SQLite ``CURRENT_TIMESTAMP`` text (UTC, ``YYYY-MM-DD HH:MM:SS``);
    ``challenge_details`` holds ``datetime.now().isoformat()`` (local time, ``T``, maybe
    microseconds). Naive values are read in ``naive_tz``; None means this host's local zone.
    """
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, int | float):
        if not (math.isfinite(value) and 1e8 < value < 1e11):
            raise ValueError(f"number {value!r} is not a plausible unix time")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {value!r}")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz) if naive_tz is not None else moment.astimezone()
    return moment.timestamp()


def to_float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def to_int(value: Any) -> int:
    number = to_float(value)
    if number != int(number):
        raise ValueError("not an integer")
    return int(number)


_TRUE_TEXT = {"1", "true", "t", "yes"}
_FALSE_TEXT = {"0", "false", "f", "no", ""}


def to_bool(value: Any) -> bool:
    """SQLite BOOLEAN as the validator writes it (0/1); NULL reads as False, like ``bool(row)``."""
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT | _FALSE_TEXT:
        return value.strip().lower() in _TRUE_TEXT
    raise ValueError(f"not a boolean: {value!r}")


def label_value(text: str) -> str:
    return text if len(text) <= MAX_LABEL_LENGTH else text[:MAX_LABEL_LENGTH]


def gpu_specs_from(name: Any, count: Any) -> GpuSpecs | None:
    """GpuSpecs from a name and a count, or None when either is missing or malformed."""
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        num = to_int(count)
    except (ValueError, TypeError, OverflowError):
        return None
    return GpuSpecs(label_value(name.strip()), num) if num >= 0 else None


def parse_gpu_specs(raw: Any) -> GpuSpecs | None:
    """``stats.gpu_specs`` JSON -> GpuSpecs; None for NULL; ValueError when it is not that shape."""
    if raw is None or raw == "":
        return None
    data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("gpu_specs is not an object")
    specs = gpu_specs_from(data.get("gpu_name"), data.get("num_gpus"))
    if specs is None:
        raise ValueError("gpu_specs lacks a gpu_name or a num_gpus")
    return specs


def to_uid(value: Any) -> int:
    uid = to_int(value)
    if not 0 <= uid <= MAX_UID:
        raise ValueError(f"uid {uid} out of range")
    return uid


def to_hotkey(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("hotkey is not a string")
    return label_value(value.strip())


def checked(bad: InvalidValues, table: str, column: str, parse: Callable[[Any], Any], raw: Any) -> Any:
    """``parse(raw)``, or None after counting the value as invalid."""
    try:
        return parse(raw)
    except (ValueError, TypeError, OverflowError):
        bad.add(table, column)
        return None
