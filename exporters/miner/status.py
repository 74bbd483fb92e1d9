"""Miner state: allocation and the result of the background port check.

Allocation is read from a file the miner keeps while it is allocated (``--miner.allocation-file``;
the original miner keeps an ``allocation_key`` file for exactly that span). A file that holds an
ss58 hotkey also names the allocating validator. Without the flag, allocation is not reported.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.miner.portcheck import PortChecker

log = logging.getLogger(__name__)

_SS58 = re.compile(r"^[1-9A-HJ-NP-Za-km-z]{46,48}$")
_MAX_READ = 4096


@dataclass(frozen=True)
class Allocation:
    """Whether the miner is allocated, and to which validator hotkey when known."""

    allocated: bool
    validator_hotkey: str | None = None


def read_allocation(path: Path) -> Allocation:
    """A missing or empty file means not allocated; an unreadable one raises OSError."""
    try:
        with path.open("rb") as f:
            text = f.read(_MAX_READ).decode("utf-8", "replace").strip()
    except FileNotFoundError:
        return Allocation(False)
    if not text:
        return Allocation(False)
    first = text.split()[0]
    return Allocation(True, first if _SS58.match(first) else None)


class MinerStatusCollector(SubCollector):
    """Allocation, port reachability, and (from exporters.core) identity and publish health. E.g.::

    opencompute_miner_allocated 1.0
    opencompute_miner_allocation_info{validator_hotkey="5F..."} 1.0
    opencompute_miner_port_open 1.0
    opencompute_miner_port_check_timestamp_seconds 1.7e+09
    """

    name = "miner"

    def __init__(
        self,
        port: PortChecker | None = None,
        allocation_file: Path | None = None,
        parts: Sequence[SubCollector] = (),
    ) -> None:
        self._port = port
        self._allocation_file = allocation_file
        self._parts = list(parts)  # identity and publish health (exporters.core), same collector name

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()
        if self._allocation_file is not None:
            alloc = read_allocation(self._allocation_file)
            yield GaugeMetricFamily(
                "opencompute_miner_allocated",
                "Whether this miner is allocated to a renter (1) or not (0), from --miner.allocation-file.",
                value=1.0 if alloc.allocated else 0.0,
            )
            if alloc.validator_hotkey:
                info = GaugeMetricFamily(
                    "opencompute_miner_allocation_info",
                    "The validator hotkey that allocated this miner.",
                    labels=["validator_hotkey"],
                )
                info.add_metric([alloc.validator_hotkey], 1.0)
                yield info
        last = self._port.last if self._port is not None else None
        if last is not None:
            yield GaugeMetricFamily(
                "opencompute_miner_port_open",
                "Whether a TCP connect to --miner.external-ip:--miner.port succeeded from this host at "
                "the last check (hairpin NAT can differ from what validators see).",
                value=1.0 if last.open else 0.0,
            )
            yield GaugeMetricFamily(
                "opencompute_miner_port_check_timestamp_seconds",
                "Unix time of the last port check.",
                value=last.checked_at,
            )
