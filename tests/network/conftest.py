"""Fixtures for the network exporter: a signed simulated subnet in a dict-backed store."""

from __future__ import annotations

import pytest
from helpers.clock import Clock

from exporters.network.simulate import MemoryStateStore, seed_network
from exporters.subnet.trust import MetagraphCache, ValidatorResolver


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStateStore:
    return MemoryStateStore(clock=clock)


@pytest.fixture
def network(store: MemoryStateStore, clock: Clock):
    return seed_network(store, validators=4, miners=16, seed=7, clock=clock)


@pytest.fixture
def resolver(network, tmp_path) -> ValidatorResolver:
    return ValidatorResolver(network.source(), MetagraphCache(tmp_path / "state"))
