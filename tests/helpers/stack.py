"""Real Prometheus/Alertmanager for tests: binaries, free ports, polling, the demo as a fixture.

Integration tests use the Debian binaries (``prometheus``, ``prometheus-alertmanager``); when
they are missing the test FAILS with the install command (a skip would hide a broken CI image).
Queries go through ``helpers.promql`` (shared with the dashboard tests); the heavy lifting
(configs, process groups, the webhook receiver) lives in
``exporters.demo.promstack`` / ``exporters.demo.processes`` so the demo and the tests share it.
"""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from exporters.demo import promstack
from exporters.demo.orchestrator import Demo, DemoConfig
from helpers.promql import query

T = TypeVar("T")

INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager (or: bash scripts/dev.sh test)"


class PrometheusAPI:
    """The few Prometheus HTTP API reads the e2e tests need (queries via ``helpers.promql``)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query (now, or at Unix time ``at``); the result vector. Raises on a bad query."""
        result = query(self.base_url, expr, self.timeout, at=at)
        if not result.ok:
            raise AssertionError(f"query failed ({result.error}): {expr}")
        data = result.body["data"]["result"]
        return data if isinstance(data, list) else [data]

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.base_url}{path}", timeout=self.timeout) as resp:
            return json.load(resp)["data"]

    def targets(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets").get("activeTargets", []))

    def alerts(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/alerts").get("alerts", []))


def require_binaries() -> tuple[str, str]:
    """Paths of prometheus and alertmanager; pytest.fail (not skip) when either is missing."""
    prom = promstack.find_binary(promstack.PROMETHEUS_NAMES)
    am = promstack.find_binary(promstack.ALERTMANAGER_NAMES)
    if prom is None or am is None:
        pytest.fail(f"integration test needs prometheus and prometheus-alertmanager: {INSTALL_HINT}")
    return prom, am


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago (bound together, then closed)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def poll(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float, interval: float = 0.25) -> T:
    """Call ``fetch`` until ``ok(result)`` or ``timeout`` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fetch()
        except OSError:
            result = None  # type: ignore[assignment]
        if result is not None and ok(result):
            return result
        if time.monotonic() >= deadline:
            return result
        time.sleep(interval)


@contextmanager
def running_demo(
    directory: Path,
    webhook_url: str,
    *,
    interval: float = 1.0,
    alert_for_cap: float | None = 1.0,
    network_replicas: int = 1,
    **overrides: Any,
) -> Iterator[Demo]:
    """The full demo on free loopback ports with 1 s scrape/evaluation; always stopped on exit.

    ``alert_for_cap`` shortens rules' ``for:`` in the demo's rule copies (the committed rules and
    their promtool tests keep production values); alerts go to ``webhook_url``. With
    ``network_replicas`` > 1 more network exporters read the same store, scraped by the same job.
    """
    require_binaries()
    miner, validator, network, prom, am, registrar, *replicas = free_ports(5 + max(1, network_replicas))
    config = DemoConfig(
        directory=directory,
        miner_address=("127.0.0.1", miner),
        validator_address=("127.0.0.1", validator),
        network_address=("127.0.0.1", network),
        registrar_address=("127.0.0.1", registrar),
        network_replica_addresses=[("127.0.0.1", port) for port in replicas],
        prometheus_address=("127.0.0.1", prom),
        alertmanager_address=("127.0.0.1", am),
        require_prometheus=True,
        webhook_url=webhook_url,
        scrape_interval=interval,
        evaluation_interval=interval,
        alert_for_cap=alert_for_cap,
        network_refresh_interval=interval,
        first_xid_after=0.5,
        echo=None,
        out=io.StringIO(),
        **overrides,
    )
    demo = Demo(config)
    try:
        demo.start()
        yield demo
    finally:
        demo.stop()
