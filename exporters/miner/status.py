"""Miner state: allocation (from trusted validators' runs) and the result of the background port check.

Allocation comes from :mod:`exporters.miner.allocation` (the network exporter's rule, refreshed in
the background); this collector only groups its series with the port check and, from
exporters.core, identity and publish health under the ``miner`` collector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.miner.portcheck import PortChecker


class MinerStatusCollector(SubCollector):
    """Port reachability, plus the parts that share the ``miner`` collector (identity, publish
    health, allocation). E.g.::

    opencompute_miner_port_open 1.0
    opencompute_miner_port_check_timestamp_seconds 1.7e+09
    """

    name = "miner"

    def __init__(self, port: PortChecker | None = None, parts: Sequence[SubCollector] = ()) -> None:
        self._port = port
        self._parts = list(parts)

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()
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
