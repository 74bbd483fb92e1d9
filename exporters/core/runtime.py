"""Process plumbing shared by every exporter: logging, build info, serving, background loops."""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters import DOCS_URL, __version__
from exporters.core.collector import ScrapeCollector, SubCollector
from exporters.core.http import DEFAULT_MAX_REQUESTS, HTTPServer, Landing, build_app
from exporters.core.statelog import StateLog
from exporters.core.webconfig import WebConfig

log = logging.getLogger("opencompute")

WATCHDOG_INTERVAL = 5.0  # how often serve() checks that every loop's thread still runs


class _LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))
        msg = record.getMessage().replace('"', "'")
        line = f'ts={ts} level={record.levelname.lower()} logger={record.name} msg="{msg}"'
        if record.exc_info and log.isEnabledFor(logging.DEBUG):
            line += "\n" + self.formatException(record.exc_info)
        return line


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


M_ARENA_MAX = -8  # glibc mallopt parameter


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (as ``MALLOC_ARENA_MAX=2`` would), before threads start.

    glibc gives threads their own arenas (up to 8 per core); the server's workers each encrypting
    and buffering 100-200 KiB bodies fragmented them, and the validator's RSS crept up by about
    1 MB a minute under 50 scrapers. With two arenas it stays flat (benchmarks/bench_serving.py).
    An operator's own ``MALLOC_ARENA_MAX`` wins; other C libraries are left alone.
    """
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger once: logfmt (default) or JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JSONFormatter() if fmt == "json" else _LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class BuildInfoCollector(Collector):
    """``opencompute_exporter_build_info{version,exporter,pythonversion} 1``."""

    def __init__(self, exporter: str) -> None:
        self._labels = [__version__, exporter, platform.python_version()]

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "opencompute_exporter_build_info",
            "A metric with a constant '1' value labeled by version, exporter and Python version.",
            labels=["version", "exporter", "pythonversion"],
        )
        fam.add_metric(self._labels, 1.0)
        yield fam

    def describe(self) -> list[Metric]:
        return []


MAX_BACKOFF = 300.0


def landing_settings(values: Mapping[str, Any]) -> dict[str, str]:
    """The configuration worth a glance on the landing page: where state goes, which subnet."""
    shown: dict[str, str] = {}
    backend = values.get("state_backend")
    if backend == "wandb":
        project = f"{values.get('wandb_entity', '')}/{values.get('wandb_project', '')}".strip("/")
        shown["state backend"] = f"wandb ({project})" if project else "wandb"
    elif backend:
        shown["state backend"] = f"{backend} ({values.get('state_sqlite_path', '')})"
    if values.get("netuid") is not None:
        shown["netuid"] = str(values["netuid"])
    if values.get("publish_mode"):
        shown["publish mode"] = str(values["publish_mode"])
    return shown


@dataclass
class Loop:
    """A background job run every ``interval`` seconds until stopped; never runs on a scrape.

    The job never dies silently: when its body raises, the loop is restarted after a backoff
    (1 s, doubling up to ``min(interval, 5 min)``; reset by a success), counted in
    :attr:`restarts`, logged once per new error (:class:`StateLog`) and shown on ``/health``.
    :meth:`ensure_running` restarts a thread that died all the same (the exporter's watchdog).
    """

    name: str
    interval: float
    func: Callable[[], Any]
    run_first: bool = True
    min_backoff: float = 1.0
    # The wait after a successful run, from its result (e.g. the registrar's end of a rate-limit
    # window); None: always ``interval``.
    next_delay: Callable[[Any], float] | None = None
    restarts: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False)
    last_success: float | None = field(default=None, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recovered: bool = field(default=False, repr=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._supervise, name=self.name, daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def failing(self) -> bool:
        """The last run raised (the loop is waiting out its backoff), or its thread is gone."""
        died = self._thread is not None and not self.alive and not self._stop.is_set()
        return self.last_error is not None or died

    def ensure_running(self) -> bool:
        """Restart the thread if it ended without being stopped; True when it did."""
        if self._stop.is_set() or self._thread is None or self._thread.is_alive():
            return False
        self._failed(RuntimeError("the loop's thread ended"))
        self.start()
        return True

    def _supervise(self) -> None:
        backoff = self.min_backoff
        first = self.run_first
        while not self._stop.is_set():
            try:
                self._run(first)
                return
            except Exception as exc:  # noqa: BLE001 - a loop survives any error of its body
                self._failed(exc)
            if self._recovered:  # it worked between the failures: start the backoff over
                backoff, self._recovered = self.min_backoff, False
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, max(self.min_backoff, min(self.interval, MAX_BACKOFF)))
            first = True

    def _run(self, first: bool) -> None:
        if not first and self._stop.wait(self.interval):
            return
        while True:
            result = self.func()
            self._succeeded()
            delay = self.interval if self.next_delay is None else self.next_delay(result)
            if self._stop.wait(delay):
                return

    def _succeeded(self) -> None:
        with self._lock:
            was, self.last_error = self.last_error, None
            self.last_success = time.time()
            self._recovered = True
        if was is not None:
            _loop_states.ok(self.name, f"background job {self.name} works again")

    def _failed(self, exc: BaseException) -> None:
        error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self.restarts += 1
            self.last_error = error
        message = f"background job {self.name} failed, restarting it: {error}"
        if _loop_states.failing(self.name, error, message, level=logging.ERROR):
            log.debug("background job %s traceback", self.name, exc_info=exc)

    def health(self) -> dict[str, Any]:
        """What ``/health`` shows for this loop."""
        with self._lock:
            return {
                "alive": self.alive,
                "restarts": self.restarts,
                "last_error": self.last_error,
                "last_success_timestamp_seconds": self.last_success,
            }

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


_loop_states = StateLog(log)


class LoopCollector(Collector):
    """Restarts and last success of each background loop. E.g.::

    opencompute_exporter_loop_restarts_total{loop="network-refresh"} 3.0
    opencompute_exporter_loop_up{loop="network-refresh"} 0.0
    opencompute_exporter_loop_last_success_timestamp_seconds{loop="network-refresh"} 1.7e+09
    """

    def __init__(self, loops: Sequence[Loop]) -> None:
        self._loops = list(loops)

    def collect(self) -> Iterator[Metric]:
        restarts = CounterMetricFamily(
            "opencompute_exporter_loop_restarts",
            "Times a background loop failed (its body raised or its thread ended) and was restarted.",
            labels=["loop"],
        )
        up = GaugeMetricFamily(
            "opencompute_exporter_loop_up",
            "1 when the background loop's thread runs and its last round succeeded (or has not run yet).",
            labels=["loop"],
        )
        last = GaugeMetricFamily(
            "opencompute_exporter_loop_last_success_timestamp_seconds",
            "Unix time the background loop last completed a round; absent before the first.",
            labels=["loop"],
        )
        for loop in self._loops:
            h = loop.health()
            restarts.add_metric([loop.name], float(h["restarts"]))
            up.add_metric([loop.name], 0.0 if loop.failing else 1.0)
            if h["last_success_timestamp_seconds"] is not None:
                last.add_metric([loop.name], h["last_success_timestamp_seconds"])
        yield restarts
        yield up
        if last.samples:
            yield last

    def describe(self) -> list[Metric]:
        return []


@dataclass
class Exporter:
    """Everything one exporter process serves: its registry, collectors and background loops."""

    name: str
    collectors: Sequence[SubCollector]
    extra: Sequence[Collector] = ()
    loops: Sequence[Loop] = ()
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=False))

    def __post_init__(self) -> None:
        self.scrape = ScrapeCollector(self.collectors)
        self.registry.register(BuildInfoCollector(self.name))
        for c in self.extra:
            self.registry.register(c)
        self.registry.register(self.scrape)
        if self.loops:
            self.registry.register(LoopCollector(self.loops))

    def health(self) -> dict[str, Any]:
        """The loops' part of ``/health``; ``degraded`` when one of them is failing."""
        if not self.loops:
            return {}
        return {
            "degraded": any(loop.failing for loop in self.loops),
            "loops": {loop.name: loop.health() for loop in self.loops},
        }

    def server(
        self,
        host: str,
        port: int,
        telemetry_path: str = "/metrics",
        web_config: WebConfig | None = None,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        settings: Mapping[str, str] | None = None,
    ) -> HTTPServer:
        landing = Landing(
            collectors=[c.name for c in self.collectors],
            loops=[loop.name for loop in self.loops],
            settings=settings or {},
            docs=f"{DOCS_URL}/{self.name}.md",
        )
        app = build_app(
            self.registry,
            exporter=self.name,
            telemetry_path=telemetry_path,
            web_config=web_config,
            scrape=self.scrape,
            max_requests=max_requests,
            health=self.health,
            landing_info=landing,
        )
        return HTTPServer(app, host, port, web_config)

    def serve(self, values: dict[str, Any], web_config: WebConfig) -> int:
        """Start loops and the HTTP server; block until SIGTERM/SIGINT; stop cleanly."""
        host, port = values["web_listen_address"]
        limit_malloc_arenas()
        try:
            server = self.server(
                host,
                port,
                values["web_telemetry_path"],
                web_config,
                values.get("web_max_requests", DEFAULT_MAX_REQUESTS),
                landing_settings(values),
            )
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, port, exc.strerror or exc)
            return 1
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        for loop in self.loops:
            loop.start()
        server.start()
        scheme = "https" if server.tls else "http"
        log.info(
            "%s exporter %s listening on %s://%s:%d%s",
            self.name,
            __version__,
            scheme,
            host,
            server.port,
            values["web_telemetry_path"],
        )
        while not stop.wait(WATCHDOG_INTERVAL):
            for loop in self.loops:
                loop.ensure_running()
        log.info("shutting down")
        for loop in self.loops:
            loop.stop()
        server.shutdown()
        return 0
