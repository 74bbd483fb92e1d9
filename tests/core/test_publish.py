"""The publisher: signed publishes through a durable outbox that survives outages and SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from bittensor_core import Keypair
from helpers.clock import Clock
from prometheus_client import CollectorRegistry

from exporters.core.collector import ScrapeCollector
from exporters.core.publish import Publisher, version_as_int
from exporters.core.signing import ENVELOPE_KEY, Outcome, verify_run, verify_v1
from exporters.core.state.sqlite_store import SQLiteStateStore

ALICE = Keypair.create_from_uri("//Alice")
PROJECT = "neuralinternet/opencompute"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> SQLiteStateStore:
    return SQLiteStateStore(str(tmp_path / "state.db"), busy_timeout=0.1, clock=clock)


def make_publisher(store, tmp_path, clock, **kwargs) -> Publisher:
    options = {"role": "miner", "netuid": 27, "outbox_path": str(tmp_path / "outbox.db"), "clock": clock}
    return Publisher(store, ALICE, **(options | kwargs))


def read_one(store, role="miner", neuron_run=False, **kwargs):
    [run] = store.read_runs(role, 27) if neuron_run else store.read_exporter_runs(role, 27)
    now = kwargs.pop("now", store._clock())
    return run, verify_run(run, entity_project=PROJECT, netuid=27, role=role, now=now, **kwargs)


@contextmanager
def store_down(store: SQLiteStateStore):
    """A real outage of the SQLite store: another connection holds an exclusive lock."""
    blocker = sqlite3.connect(store.path)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


def test_envelope_mode_publishes_a_valid_v2_run_of_our_own_that_the_originals_filters_never_select(
    store, tmp_path, clock
):
    pub = make_publisher(store, tmp_path, clock)
    pub.submit({"specs": {"gpu": {"count": 1, "details": [{"name": "NVIDIA H100", "capacity": 81559}]}}})
    assert pub.flush() == 1
    run, result = read_one(store)
    assert result.outcome is Outcome.VALID_V2
    assert result.payload == {
        "specs": {"gpu": {"count": 1, "details": [{"name": "NVIDIA H100", "capacity": 81559}]}}
    }
    assert result.seq == 1
    # a run of our own: the envelope is its whole config, under a name get_run_id never matches
    assert run.name == f"opencompute-exporter-miner-{ALICE.ss58_address}"
    assert set(run.config) == {ENVELOPE_KEY}
    assert store.read_runs("miner", 27) == []  # the original's filters (config.role, config.config.netuid)


def test_full_mode_also_writes_the_originals_top_level_shapes(store, tmp_path, clock):
    pub = make_publisher(
        store, tmp_path, clock, role="validator", mode="full", version=190, into_neuron_run=True
    )
    stats = {
        "3": {"uid": 3, "hotkey": "5X", "gpu_specs": None, "score": 0, "allocated": False, "own_score": True}
    }
    pub.submit({"stats": stats, "allocated_hotkeys": ["5Y"]})
    pub.flush()
    run, result = read_one(store, role="validator", neuron_run=True)
    assert result.outcome is Outcome.VALID_V2
    assert run.config["stats"] == stats and run.config["allocated_hotkeys"] == ["5Y"]
    assert (run.config["role"], run.config["version"], run.config["config"]) == (
        "validator",
        190,
        {"netuid": 27},
    )
    assert verify_v1(run.config["hotkey"], run.config["signature"], run.run_id)


def test_version_is_encoded_like_the_originals_version_as_int():
    assert version_as_int("1.9.0") == 190
    assert version_as_int("1.8.3") == 183
    assert version_as_int("0.1.0") == 10


def test_submit_is_local_and_superseded_updates_are_coalesced_into_one_publish(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock)
    for i in range(3):
        assert pub.submit({"allocated": f"5V{i}", f"k{i}": i}) == i + 1
    assert store.request_counts() == {}  # submit never touched the store
    assert pub.flush() == 3
    assert store.request_counts()["publish"] == 1
    _, result = read_one(store)
    assert result.payload == {"allocated": "5V2", "k0": 0, "k1": 1, "k2": 2}
    assert pub.outbox_entries == 0


def test_store_down_grows_the_outbox_and_store_back_drains_it_with_nothing_lost(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock)
    pub.submit({"a": 1})
    pub.flush()
    with store_down(store):
        for i in range(5):
            pub.submit({"b": i})
            assert pub.flush() == 0
        assert pub.outbox_entries == 5
        snap = pub.snapshot()
        assert snap["failures"]["timeout"] == 5 and snap["attempts"] == 6
    clock.now += 30
    assert pub.flush() == 5
    assert pub.outbox_entries == 0
    _, result = read_one(store)
    assert result.outcome is Outcome.VALID_V2
    assert result.payload == {"a": 1, "b": 4}
    assert result.signed_at == clock.now


def test_sequence_numbers_persist_across_restarts_and_only_grow(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock)
    pub.submit({"a": 1})
    pub.flush()
    pub.submit({"a": 2})
    pub.flush()
    assert pub.sequence == 2
    pub.close()
    again = make_publisher(store, tmp_path, clock)
    assert again.sequence == 2
    again.submit({"a": 3})
    again.flush()
    last_seq: dict[str, int] = {ALICE.ss58_address: 2}
    _, result = read_one(store, last_seq=last_seq)
    assert (result.outcome, result.seq, result.payload) == (Outcome.VALID_V2, 3, {"a": 3})


def test_unchanged_state_is_re_signed_after_republish_after_so_readers_see_it_alive(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock, republish_after=600.0)
    pub.submit({"a": 1})
    pub.flush()
    clock.now += 599
    pub.flush()
    assert pub.sequence == 1
    clock.now += 2
    assert pub.flush() == 0
    assert pub.sequence == 2
    _, result = read_one(store, max_age=60)
    assert (result.outcome, result.signed_at, result.payload) == (Outcome.VALID_V2, clock.now, {"a": 1})


def test_a_payload_that_cannot_be_signed_is_refused_at_submit(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock)
    with pytest.raises(ValueError):
        pub.submit({"score": float("nan")})
    assert pub.outbox_entries == 0


def test_publish_metrics_follow_the_contract(store, tmp_path, clock):
    pub = make_publisher(store, tmp_path, clock)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([pub.collector()]))
    assert registry.get_sample_value("opencompute_publish_last_success_timestamp_seconds") is None
    pub.submit({"a": 1})
    with store_down(store):
        pub.flush()
    assert registry.get_sample_value("opencompute_publish_outbox_entries") == 1
    assert registry.get_sample_value("opencompute_publish_failures_total", {"reason": "timeout"}) == 1
    assert registry.get_sample_value("opencompute_publish_failures_total", {"reason": "auth"}) == 0
    pub.flush()
    assert registry.get_sample_value("opencompute_publish_attempts_total") == 2
    assert registry.get_sample_value("opencompute_publish_outbox_entries") == 0
    assert registry.get_sample_value("opencompute_publish_sequence") == 1  # the failed try never signed
    assert registry.get_sample_value("opencompute_publish_last_success_timestamp_seconds") == clock.now
    assert registry.get_sample_value("opencompute_scrape_collector_success", {"collector": "publish"}) == 1


CHILD = textwrap.dedent(
    """
    import sys, time
    from bittensor_core import Keypair
    from exporters.core.publish import Publisher
    from exporters.core.state.sqlite_store import SQLiteStateStore
    state, outbox = sys.argv[1], sys.argv[2]
    store = SQLiteStateStore(state, busy_timeout=0.05)
    pub = Publisher(store, Keypair.create_from_uri("//Alice"), role="miner", netuid=27, outbox_path=outbox)
    i = 0
    while True:
        pub.submit({"counter": i, f"slot{i % 4}": i})
        print(i, flush=True)   # acknowledged: submit() returned
        pub.flush()
        i += 1
    """
)


def _run_child_until(tmp_path: Path, acked: int) -> int:
    """Start a publisher process, SIGKILL it after ``acked`` acknowledged submits; return last ack."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path / "state.db"), str(tmp_path / "outbox.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    last = -1
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            last = int(line)
            if last >= acked or time.monotonic() > deadline:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    return last


def test_a_publisher_killed_mid_way_loses_nothing_after_restart(tmp_path, clock):
    store = SQLiteStateStore(str(tmp_path / "state.db"), busy_timeout=1.0)
    # phase 1: store up, killed while submitting and publishing
    last = _run_child_until(tmp_path, acked=25)
    assert last >= 25
    # phase 2: store down, killed while updates pile up in the outbox
    with store_down(store):
        last = _run_child_until(tmp_path, acked=last + 10)
    seen_seq = store.read_exporter_runs("miner", 27)[0].config[ENVELOPE_KEY]["seq"]
    # restart: a new publisher on the same files drains what the dead ones left behind
    pub = Publisher(store, ALICE, role="miner", netuid=27, outbox_path=str(tmp_path / "outbox.db"))
    assert pub.outbox_entries >= 1
    pub.flush()
    assert pub.outbox_entries == 0
    last_seq = {ALICE.ss58_address: seen_seq}
    _, result = read_one(store, now=time.time(), last_seq=last_seq)
    assert result.outcome is Outcome.VALID_V2
    assert result.seq > seen_seq
    counter = result.payload["counter"]
    assert counter >= last  # every acknowledged submit made it (a later unacknowledged one may too)
    for k in range(4):  # each slot holds the newest value written to it up to `counter`
        assert result.payload[f"slot{k}"] == max(i for i in range(counter + 1) if i % 4 == k)


# --------------------------------------------------------------------------- identity and store wiring


def _values(tmp_path, **overrides):
    import argparse

    from exporters.core.config import FlagSet
    from exporters.core.identity import identity_flags

    flags = FlagSet(identity_flags("miner"))
    values = flags.resolve(argparse.Namespace(), environ={})
    values.update(state_sqlite_path=str(tmp_path / "state.db"), publish_outbox_path=str(tmp_path / "ob.db"))
    values.update(overrides)
    return values


def test_without_a_wallet_publishing_is_off_and_the_metrics_say_so(tmp_path):
    from exporters.core.identity import IdentityCollector, build_identity, build_publisher, build_store

    values = _values(tmp_path)
    assert (
        values["netuid"] == 27
        and values["state_backend"] == "sqlite"
        and values["publish_mode"] == "envelope"
    )
    identity = build_identity(values, role="miner")
    store = build_store(values)
    assert identity is None and build_publisher(values, identity, store, "miner") is None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([IdentityCollector(identity, store, role="miner")]))
    assert registry.get_sample_value("opencompute_publish_enabled") == 0
    assert registry.get_sample_value("opencompute_identity_info", {"role": "miner"}) is None
    labels = {"backend": "sqlite", "project": PROJECT}
    assert registry.get_sample_value("opencompute_state_store_info", labels) == 1


def test_a_configured_identity_publishes_and_is_exported_with_store_request_counts(tmp_path):
    from exporters.core.identity import IdentityCollector, build_identity, build_publisher, build_store

    values = _values(tmp_path, hotkey_uri="//Alice", netuid=15)
    identity = build_identity(values, role="miner")
    store = build_store(values)
    pub = build_publisher(values, identity, store, "miner")
    pub.submit({"a": 1})
    pub.flush()
    store.read_exporter_runs("miner", 15)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([IdentityCollector(identity, store, role="miner")]))
    info = {"role": "miner", "hotkey": ALICE.ss58_address, "netuid": "15"}
    assert registry.get_sample_value("opencompute_identity_info", info) == 1
    assert registry.get_sample_value("opencompute_publish_enabled") == 1
    read = {"backend": "sqlite", "operation": "read"}
    # the publisher's single-writer check (the run's current envelope) and our read
    assert registry.get_sample_value("opencompute_state_store_requests_total", read) == 2


def test_wallet_and_uri_together_are_a_config_error(tmp_path):
    from exporters.core.config import ConfigError
    from exporters.core.identity import build_identity

    with pytest.raises(ConfigError):
        build_identity(_values(tmp_path, hotkey_uri="//Alice", wallet_name="cold"))


def test_full_mode_without_the_dangerous_flag_is_a_config_error_and_with_it_says_why(tmp_path, caplog):
    from exporters.core.config import ConfigError
    from exporters.core.identity import build_identity, build_publisher, build_store

    values = _values(tmp_path, hotkey_uri="//Alice", publish_mode="full")
    identity, store = build_identity(values, role="validator"), build_store(values)
    with pytest.raises(ConfigError) as err:
        build_publisher(values, identity, store, "validator")
    assert "--publish.into-neuron-run" in str(err.value)
    values["publish_into_neuron_run"] = True
    pub = build_publisher(values, identity, store, "validator")
    assert pub is not None and pub.target == "neuron"
    assert any("erases ours" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    with pytest.raises(ConfigError):  # the flag alone changes nothing silently either
        build_publisher(
            _values(tmp_path, hotkey_uri="//Alice", publish_into_neuron_run=True), identity, store, "v"
        )


def test_a_wallet_on_the_sqlite_backend_warns_once_and_exports_that_nothing_reaches_the_network(
    tmp_path, caplog
):
    from exporters.core.identity import Identity, IdentityCollector, build_publisher, build_store

    values = _values(tmp_path)
    store = build_store(values)
    wallet = Identity(ALICE, 27, "miner", source="wallet")
    build_publisher(values, wallet, store, "miner")
    warnings = [r for r in caplog.records if "nothing reaches the network" in r.getMessage()]
    assert len(warnings) == 1 and ALICE.ss58_address in warnings[0].getMessage()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([IdentityCollector(wallet, store, role="miner")]))
    assert registry.get_sample_value("opencompute_publish_local_only") == 1
    dev = CollectorRegistry(auto_describe=False)  # a development key URI is not a real hotkey
    dev.register(ScrapeCollector([IdentityCollector(Identity(ALICE, 27, "miner", source="uri"), store)]))
    assert dev.get_sample_value("opencompute_publish_local_only") == 0
