"""One demo stack for the whole end-to-end suite: exporters, real Prometheus, real Alertmanager.

Starting it costs ~10 s (Prometheus' first scrape comes ~5.5 s after start), so the stack is
shared by the e2e tests and torn down at the end of the session, also when a test fails.
Alerts are delivered to a webhook receiver owned by the tests (not the demo's printer).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers.stack import running_demo

from exporters.demo.orchestrator import Demo
from exporters.demo.promstack import WebhookReceiver


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    """A tiny HTTP server recording every Alertmanager notification."""
    receiver = WebhookReceiver("127.0.0.1", 0).start()
    try:
        yield receiver
    finally:
        receiver.shutdown()


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver) -> Iterator[Demo]:
    """The demo with 1 s scrape/evaluation/refresh, alert `for:` capped at 1 s, two network replicas.

    Two network exporters read the same store, as the shipped 2-replica Deployment does: every
    e2e test therefore also checks that alerts and panels do not count them twice.
    """
    with running_demo(tmp_path_factory.mktemp("demo"), webhook.url, network_replicas=2) as running:
        yield running
