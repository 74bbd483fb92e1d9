"""The external port check against real sockets on 127.0.0.1, and its metrics."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from exporters.miner.portcheck import PortChecker
from exporters.miner.status import MinerStatusCollector


@pytest.fixture
def listening() -> Iterator[int]:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()


@pytest.fixture
def closed_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connect is refused
    return port


def samples(collector):
    return {f.name: f.samples[0].value for f in collector.collect()}


def test_a_listening_port_is_reported_open_with_the_check_time(listening):
    checker = PortChecker("127.0.0.1", listening, timeout=1.0, clock=lambda: 1234.5)
    result = checker.check()
    assert result.open and result.error == ""
    got = samples(MinerStatusCollector(checker))
    assert got == {
        "opencompute_miner_port_open": 1.0,
        "opencompute_miner_port_check_timestamp_seconds": 1234.5,
    }


def test_a_closed_port_is_reported_closed(closed_port):
    checker = PortChecker("127.0.0.1", closed_port, timeout=1.0)
    result = checker.check()
    assert not result.open
    assert result.error  # e.g. "Connection refused"
    assert samples(MinerStatusCollector(checker))["opencompute_miner_port_open"] == 0.0


def test_no_port_series_before_the_first_check_or_without_configuration(listening):
    assert samples(MinerStatusCollector(PortChecker("127.0.0.1", listening))) == {}
    assert samples(MinerStatusCollector(None)) == {}


def test_only_a_change_of_state_is_logged(listening, caplog):
    checker = PortChecker("127.0.0.1", listening, timeout=1.0)
    with caplog.at_level(logging.INFO, logger="exporters.miner.portcheck"):
        for _ in range(3):
            checker.check()
    assert len(caplog.records) == 1
