"""A bare, real Prometheus for checking PromQL: no targets, throwaway storage, a loopback port.

``dashboards.queries.grafana_to_promql`` turns a panel query into plain PromQL; this module sends
it to ``/api/v1/query``. Prometheus answers 400 ``bad_data`` when the expression does not parse,
so "does every panel query parse?" becomes a real check, and the demo/e2e tests can reuse the
same calls against a Prometheus that has data. A missing binary FAILS the test (no skip).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROMETHEUS = "prometheus"
INSTALL_HINT = "apt-get install prometheus"
READY_TIMEOUT = 15.0


@dataclass(frozen=True)
class QueryResult:
    """HTTP status and decoded body of one ``/api/v1/query`` call."""

    status: int
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.body.get("status") == "success"

    @property
    def error(self) -> str:
        return f"{self.body.get('errorType', '?')}: {self.body.get('error', '?')}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(base_url: str, expr: str, timeout: float = 5.0, at: float | None = None) -> QueryResult:
    """Run an instant query (now, or at Unix time ``at``); a 4xx/5xx answer is returned, not raised."""
    params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
    data = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(f"{base_url}/api/v1/query", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return QueryResult(response.status, json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return QueryResult(exc.code, json.loads(exc.read() or b"{}"))


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/-/ready", timeout=1.0) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def running_prometheus(workdir: Path) -> Iterator[str]:
    """Start ``prometheus`` with an empty scrape config on 127.0.0.1; yield its base URL."""
    binary = shutil.which(PROMETHEUS)
    if binary is None:
        pytest.fail(f"this test needs the prometheus binary: {INSTALL_HINT}")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    base_url = f"http://127.0.0.1:{_free_port()}"
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={base_url.removeprefix('http://')}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(base_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"prometheus did not become ready:\n{(workdir / 'prometheus.log').read_text()[-2000:]}"
                )
            time.sleep(0.1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
