"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fakes.wandb_graphql import FakeWandbGraphQL


@pytest.fixture
def fake() -> Iterator[FakeWandbGraphQL]:
    """The fake WandB API server (tests/fakes/wandb_graphql.py) on a free loopback port."""
    server = FakeWandbGraphQL()
    server.start()
    yield server
    server.stop()
