"""Fixtures for the registrar: a fake chain behind real bittensor Clients, a dev hotkey, no network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bittensor as bt
import pytest
from bittensor_core import Keypair
from fakes.substrate import FakeSubstrate
from registrar_helpers import NETUID, FakeClock, desired

from exporters.registrar.record import Target
from exporters.registrar.service import Registrar, RetryPolicy


@pytest.fixture(autouse=True)
def _isolated_bittensor_cache(tmp_path, monkeypatch) -> None:
    """``Client.connect`` caches token symbols on disk; keep that out of the home directory."""
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "token_symbols.json"))


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Any:
    """The CLI configures the root logger; give later tests the handlers pytest installed."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def hotkey() -> Keypair:
    return Keypair.create_from_uri("//Alice")


@pytest.fixture
def chain(hotkey: Keypair) -> FakeSubstrate:
    """A subnet 27 where Alice's hotkey holds UID 5 with a validator permit; serving is limited to
    one serve per 50 blocks."""
    fake = FakeSubstrate(block=10_000)
    fake.register_neuron(NETUID, hotkey.ss58_address, uid=5)
    fake.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [False] * 5 + [True])
    fake.set_storage("SubtensorModule", "ServingRateLimit", [NETUID], 50)
    return fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_registrar(chain: FakeSubstrate, hotkey: Keypair, clock: FakeClock) -> Callable[..., Registrar]:
    """A Registrar whose bittensor Clients all talk to ``chain``; keyword args override defaults."""

    def build(record: Target | None = None, **kwargs: Any) -> Registrar:
        want = record or desired()
        options: dict[str, Any] = {
            "signer": hotkey,
            "client_factory": lambda: bt.Client("finney", substrate=chain),
            "target": lambda: want,
            "policy": RetryPolicy(max_attempts=5, max_time=60.0, attempt_timeout=5.0),
            "sleep": clock.sleep,
            "clock": clock,
        }
        options.update(kwargs)
        return Registrar(**options)

    return build
