"""Attested vs published: the neuron's run and our exporter's signed run, bound by hotkey."""

from __future__ import annotations

import logging

from bittensor_core import Keypair
from helpers.clock import Clock
from prometheus_client import CollectorRegistry

from exporters.core.collector import ScrapeCollector
from exporters.core.publish import Publisher
from exporters.core.signing import make_envelope
from exporters.core.state.naming import exporter_run_name
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.network.attestation import (
    AttestationCollector,
    AttestationRefresher,
    NetworkHealthCollector,
    NetworkInputsCollector,
)
from exporters.network.refresh import Snapshot

VALIDATOR = Keypair.create_from_uri("//validator0")
MINER = Keypair.create_from_uri("//miner0")
STRANGER = Keypair.create_from_uri("//stranger")
H100 = {"count": 8, "details": [{"name": "NVIDIA H100 80GB HBM3", "capacity": 81559}]}


def publish(store, tmp_path, keypair, role, payload, clock, *, neuron: bool) -> None:
    name = f"{'n' if neuron else 'e'}-{role}-{keypair.ss58_address[:6]}"
    options = {"mode": "full", "into_neuron_run": True} if neuron else {}
    pub = Publisher(
        store, keypair, role=role, netuid=27, outbox_path=str(tmp_path / f"{name}.db"), clock=clock, **options
    )
    pub.submit(payload)
    assert pub.flush() == 1
    pub.close()


def scrape(*collectors) -> tuple[dict, ScrapeCollector]:
    registry = CollectorRegistry(auto_describe=False)
    scraper = ScrapeCollector(list(collectors))
    registry.register(scraper)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in registry.collect() for s in f.samples
    }
    return samples, scraper


def test_where_a_neuron_publishes_other_than_its_host_signed_it_shows_per_hotkey(tmp_path):
    clock = Clock()
    store = SQLiteStateStore(str(tmp_path / "state.db"), clock=clock)
    listed = [MINER.ss58_address, "5Renter"]
    publish(
        store,
        tmp_path,
        VALIDATOR,
        "validator",
        {"allocated_hotkeys": listed, "stats": {}},
        clock,
        neuron=True,
    )
    publish(
        store,
        tmp_path,
        VALIDATOR,
        "validator",
        {"allocated_hotkeys": [MINER.ss58_address]},
        clock,
        neuron=False,
    )
    publish(store, tmp_path, MINER, "miner", {"specs": {"gpu": H100}}, clock, neuron=True)
    publish(store, tmp_path, MINER, "miner", {"specs": {"gpu": {**H100, "count": 4}}}, clock, neuron=False)
    # a run with our naming, signed by another hotkey, and a stranger's own run (not registered)
    fake = make_envelope(
        STRANGER,
        entity_project=store.entity_project,
        netuid=27,
        run_id="squat001",
        role="miner",
        payload={"specs": {"gpu": H100}},
        seq=1,
        signed_at=clock(),
    )
    store.put_raw("squat001", exporter_run_name("miner", "5Squatted"), {"opencompute": fake})
    publish(store, tmp_path, STRANGER, "miner", {"specs": {"gpu": H100}}, clock, neuron=False)

    uids = {VALIDATOR.ss58_address: 0, MINER.ss58_address: 1}
    refresher = AttestationRefresher(
        store, lambda: (frozenset({VALIDATOR.ss58_address}), uids), netuid=27, max_run_age=None, clock=clock
    )
    assert refresher.refresh()
    samples, _ = scrape(AttestationCollector(refresher))

    def match(role, hotkey, field):
        key = (("field", field), ("hotkey", hotkey), ("role", role))
        return samples.get(("opencompute_network_attestation_match", key))

    assert match("validator", VALIDATOR.ss58_address, "allocated_hotkeys") == 0
    diff = (
        "opencompute_network_attestation_allocated_hotkeys_difference",
        (("hotkey", VALIDATOR.ss58_address),),
    )
    assert samples[diff] == 1  # "5Renter" is only in the neuron's list
    assert match("miner", MINER.ss58_address, "gpu_count") == 0
    assert match("miner", MINER.ss58_address, "gpu_model") == 1
    miner_runs = {
        dict(labels)["status"]: value
        for (name, labels), value in samples.items()
        if name == "opencompute_network_attestation_runs" and dict(labels)["role"] == "miner"
    }
    assert miner_runs == {"valid": 2, "rejected": 0, "name_mismatch": 1, "duplicate": 0}
    # the stranger has a valid run of ours but is not registered: no per-hotkey series
    assert not any(dict(labels).get("hotkey") == STRANGER.ss58_address for _, labels in samples)
    both = ("opencompute_network_attestation_hotkeys", (("coverage", "both"), ("role", "miner")))
    assert samples[both] == 1


def test_an_empty_store_without_trust_is_degraded_on_health_in_a_metric_and_one_log_line(caplog):
    inputs = NetworkInputsCollector(lambda: Snapshot.empty(27))
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            samples, scraper = scrape(inputs, NetworkHealthCollector(inputs))
    for check in ("store", "trust", "runs"):
        assert samples[("opencompute_network_input_ok", (("check", check),))] == 0
    assert samples[("opencompute_scrape_collector_success", (("collector", "network_health"),))] == 0
    assert not scraper.status.ok and scraper.status.failed == ["network_health"]  # /health: degraded
    degraded = [r for r in caplog.records if "degraded" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(degraded) == 1  # once per change, not once per scrape


def test_fed_the_refreshers_runs_it_reads_only_our_runs_and_serves_our_validators_envelope(tmp_path):
    clock = Clock()
    store = SQLiteStateStore(str(tmp_path / "state.db"), clock=clock)
    publish(
        store,
        tmp_path,
        VALIDATOR,
        "validator",
        {"allocated_hotkeys": ["5Renter"], "stats": {}},
        clock,
        neuron=True,
    )
    signed = {"allocated_hotkeys": [MINER.ss58_address], "stats": {}}
    publish(store, tmp_path, VALIDATOR, "validator", signed, clock, neuron=False)
    neuron_runs = {
        role: store.read_runs(role, 27) for role in ("validator", "miner")
    }  # the refresher's cache
    uids = {VALIDATOR.ss58_address: 0}
    refresher = AttestationRefresher(
        store,
        lambda: (frozenset({VALIDATOR.ss58_address}), uids),
        netuid=27,
        max_run_age=None,
        clock=clock,
        neuron_runs=neuron_runs.__getitem__,
    )
    before = store.request_counts().get("read", 0)
    assert refresher.refresh()
    assert store.request_counts()["read"] == before + 2  # our runs of each role; the neurons' not again
    samples, _ = scrape(AttestationCollector(refresher))
    key = (("field", "allocated_hotkeys"), ("hotkey", VALIDATOR.ss58_address), ("role", "validator"))
    assert samples[("opencompute_network_attestation_match", key)] == 0
    envelope = refresher.envelope(VALIDATOR.ss58_address)
    assert envelope is not None and envelope.signature == "v2"
    assert list(envelope.payload["allocated_hotkeys"]) == [MINER.ss58_address]  # what our exporter signed
    assert refresher.envelope(MINER.ss58_address) is None


def test_the_network_exporter_shares_its_runs_with_the_attestation_and_binds_the_strict_reading():
    from exporters.network import cli
    from exporters.network.simulate import MemoryStateStore

    parts = cli.build_exporter({}, store=MemoryStateStore(), source=None)
    assert parts.attestation is not None
    assert parts.refresher.envelope_lookup == parts.attestation.envelope
    assert parts.attestation._neuron_runs == parts.refresher.records


def test_the_strict_reading_prefers_our_own_run_then_an_envelope_in_the_neurons_run():
    from exporters.network.refresh import _first_envelope
    from exporters.subnet.views import VerifiedRun

    ours = VerifiedRun("r1", "validator", "A", {"stats": {}})
    in_neuron = VerifiedRun("r2", "validator", "A", {"stats": {}})
    other = VerifiedRun("r3", "validator", "B", {"stats": {}})
    lookup = _first_envelope({"A": ours}.get, {"A": in_neuron, "B": other}.get)
    assert lookup("A") is ours and lookup("B") is other and lookup("C") is None
    assert _first_envelope(None, {"B": other}.get)("B") is other
