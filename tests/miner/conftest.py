"""Fixtures for the miner exporter: an exporter over fake NVML with pinned host specs."""

from __future__ import annotations

from collections.abc import Callable

import psutil
import pytest
from fakes.nvml import FakeNvml
from miner_helpers import PINNED_HOST, flag_values

from exporters.miner.cli import MinerParts, build_exporter


@pytest.fixture
def make_exporter() -> Callable[..., MinerParts]:
    """Build a miner exporter over a FakeNvml with pinned host specs; loops are not started."""

    def make(fake: FakeNvml | None, *argv: str) -> MinerParts:
        return build_exporter(flag_values(*argv), nvml=fake, psutil=psutil, host_reader=lambda: PINNED_HOST)

    return make
