"""Scrape-time collectors with per-collector success and duration, node_exporter style.

Each exporter supplies a list of :class:`SubCollector`. At every scrape :class:`ScrapeCollector`
runs the enabled ones, each building fresh metric families. A sub-collector that raises loses
only its own families; its ``opencompute_scrape_collector_success{collector}`` becomes 0 and a
log line says why. ::

    opencompute_scrape_collector_success{collector="gpu"} 1.0
    opencompute_scrape_collector_duration_seconds{collector="gpu"} 0.0012
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters.core.statelog import StateLog

log = logging.getLogger(__name__)


class SubCollector:
    """One named group of metric families, built fresh on every call of :meth:`collect`."""

    name: str = "unnamed"

    def collect(self) -> Iterable[Metric]:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class ScrapeStatus:
    """Outcome of the last scrape, read by ``/health``."""

    finished_at: float | None = None
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class ScrapeCollector(Collector):
    """Runs the enabled sub-collectors and reports their success and duration."""

    def __init__(
        self,
        collectors: Sequence[SubCollector],
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._collectors = list(collectors)
        self._clock = clock
        self._lock = threading.Lock()
        self._states = StateLog(log)
        self.status = ScrapeStatus()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._collectors]

    def collect(self) -> Iterator[Metric]:
        success = GaugeMetricFamily(
            "opencompute_scrape_collector_success",
            "Whether the collector succeeded during this scrape (1) or failed (0).",
            labels=["collector"],
        )
        duration = GaugeMetricFamily(
            "opencompute_scrape_collector_duration_seconds",
            "Time the collector took during this scrape.",
            labels=["collector"],
            unit="",
        )
        failed: list[str] = []
        for sub in self._collectors:
            start = self._clock()
            try:
                families = list(sub.collect())
            except Exception as exc:
                # A collector that reports a state it already logged (``quiet``) fails silently;
                # others once per new error and a reminder every 10 minutes, not once per scrape.
                message = f"collector={sub.name} collection failed: {exc}"
                if getattr(exc, "quiet", False):
                    log.debug(message)
                elif self._states.failing(sub.name, str(exc), message):
                    log.debug("collector=%s traceback", sub.name, exc_info=True)
                families = []
                ok = False
                failed.append(sub.name)
            else:
                ok = True
                self._states.ok(sub.name, f"collector={sub.name} collects again")
            duration.add_metric([sub.name], self._clock() - start)
            success.add_metric([sub.name], 1.0 if ok else 0.0)
            yield from families
        with self._lock:
            self.status = ScrapeStatus(finished_at=time.time(), failed=failed)
        yield success
        yield duration

    def describe(self) -> list[Metric]:
        # Returning nothing stops the registry from calling collect() at registration time.
        return []
