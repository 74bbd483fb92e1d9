"""Process plumbing shared by every exporter: logging, build info, serving, background loops."""

from __future__ import annotations

import json
import logging
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporters import __version__
from exporters.core.collector import ScrapeCollector, SubCollector
from exporters.core.http import HTTPServer, build_app
from exporters.core.webconfig import WebConfig

log = logging.getLogger("opencompute")


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


@dataclass
class Loop:
    """A background job run every ``interval`` seconds until stopped; never runs on a scrape."""

    name: str
    interval: float
    func: Callable[[], Any]
    run_first: bool = True
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if not self.run_first and self._stop.wait(self.interval):
            return
        while True:
            try:
                self.func()
            except Exception:
                log.exception("background job %s failed", self.name)
            if self._stop.wait(self.interval):
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


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

    def server(
        self, host: str, port: int, telemetry_path: str = "/metrics", web_config: WebConfig | None = None
    ) -> HTTPServer:
        app = build_app(
            self.registry,
            exporter=self.name,
            telemetry_path=telemetry_path,
            web_config=web_config,
            scrape=self.scrape,
        )
        return HTTPServer(app, host, port, web_config)

    def serve(self, values: dict[str, Any], web_config: WebConfig) -> int:
        """Start loops and the HTTP server; block until SIGTERM/SIGINT; stop cleanly."""
        host, port = values["web_listen_address"]
        try:
            server = self.server(host, port, values["web_telemetry_path"], web_config)
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
        stop.wait()
        log.info("shutting down")
        for loop in self.loops:
            loop.stop()
        server.shutdown()
        return 0
