"""The WandB state store: real offline writes, its GraphQL reads against a fake GraphQL server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from bittensor_core import Keypair
from fakes.wandb_graphql import read_offline_run

from exporters.core.config import ConfigError
from exporters.core.publish import Publisher
from exporters.core.signing import ENVELOPE_KEY, Outcome, sign_v1, verify_run
from exporters.core.state.base import StoreUnavailable
from exporters.core.state.wandb_store import WandbStateStore

PROJECT = "neuralinternet/opencompute"
KEY = "k" * 40  # any key: the fake accepts every credential
ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


@pytest.fixture(autouse=True)
def wandb_env(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def reader(fake, tmp_path, **kwargs) -> WandbStateStore:
    options = {
        "base_url": fake.base_url,
        "api_key": KEY,
        "timeout": 5,
        "db_path": str(tmp_path / "reader.db"),
    }
    return WandbStateStore(**(options | kwargs))


def writer(tmp_path, name="writer") -> WandbStateStore:
    return WandbStateStore(
        mode="offline", run_dir=str(tmp_path / name), db_path=str(tmp_path / f"{name}.db"), timeout=20
    )


def stats_payload() -> dict:
    entry = {
        "hotkey": BOB.ss58_address,
        "gpu_specs": {"gpu_name": "NVIDIA H100 80GB HBM3", "num_gpus": 8},
        "score": 37.5,
        "allocated": False,
        "own_score": True,
        "reliability_score": 0.0,
        "created_at": "2025-06-13 12:00:00",
    }
    return {"stats": {str(uid): dict(entry, uid=uid) for uid in range(256)}, "allocated_hotkeys": []}


def offline_run_file(run_dir: Path, run_id: str) -> Path:
    [path] = sorted(run_dir.glob(f"wandb/offline-run-*-{run_id}/run-{run_id}.wandb"))[-1:]
    return path


def test_a_run_written_in_real_offline_mode_reads_back_valid_through_the_real_api(fake, tmp_path):
    store = writer(tmp_path)
    pub = Publisher(
        store,
        ALICE,
        role="validator",
        netuid=27,
        outbox_path=str(tmp_path / "ob.db"),
        mode="full",
        version=190,
        into_neuron_run=True,  # a simulation: our publisher replaces the original one
    )
    pub.submit(stats_payload())  # ~60 KB: the .wandb records span several 32 KiB blocks
    assert pub.flush() == 1
    run_id = store.run_id_for("validator", ALICE.ss58_address, target="neuron")
    store.close()  # offline runs reach their .wandb file at finish

    synced = read_offline_run(offline_run_file(tmp_path / "writer", run_id))
    assert (synced.run_id, synced.display_name) == (run_id, f"validator-{ALICE.ss58_address}")
    assert synced.config["version"] == 190 and synced.config["role"] == "validator"
    fake.add_run(synced.run_id, synced.display_name, synced.config, created_at=1_760_000_000)
    # an original-style validator (v1 only), a miner, and a validator on another netuid
    original = {"hotkey": BOB.ss58_address, "role": "validator", "config": {"netuid": 27}, "stats": {}}
    fake.add_run(
        "orig0001", f"validator-{BOB.ss58_address}", original | {"signature": sign_v1(BOB, "orig0001")}
    )
    fake.add_run("miner001", "miner-5X", {"role": "miner", "config": {"netuid": 27}})
    fake.add_run("test0001", "validator-5Y", {"role": "validator", "config": {"netuid": 15}, "stats": {}})

    records = reader(fake, tmp_path).read_runs("validator", 27, require_key="stats")
    assert [r.run_id for r in records] == [run_id, "orig0001"]  # newest first
    assert json.loads(fake.last_variables["Runs"]["filters"]) == {
        "$and": [
            {"config.role": "validator"},
            {"config.config.netuid": 27},
            {"config.stats": {"$exists": True}},
        ]
    }
    ours, theirs = (
        verify_run(r, entity_project=PROJECT, netuid=27, role="validator", now=time.time()) for r in records
    )
    assert ours.outcome is Outcome.VALID_V2 and ours.payload == stats_payload()
    assert theirs.outcome is Outcome.VALID_V1_ONLY and theirs.hotkey == BOB.ss58_address


def test_the_run_id_is_kept_in_wandb_runs_and_resumed_after_a_restart(tmp_path):
    first = writer(tmp_path)
    first.publish("miner", ALICE.ss58_address, {"a": 1})
    run_id = first.run_id_for("miner", ALICE.ss58_address)
    first.close()
    again = writer(tmp_path)
    assert again.run_id_for("miner", ALICE.ss58_address) == run_id
    again.publish("miner", ALICE.ss58_address, {"b": 2}, defaults={"role": "miner"})
    assert dict(again.local_run(ALICE.ss58_address).config) == {"b": 2, "role": "miner"}
    assert again.local_run(ALICE.ss58_address).id == run_id
    again.close()
    assert offline_run_id(tmp_path / "writer", run_id) == run_id


def offline_run_id(run_dir: Path, run_id: str, wait: float = 10.0) -> str:
    """The run id recorded in the newest offline file of ``run_id``.

    wandb-core may still be writing the file's last block when ``finish()`` has returned (seen
    once on a loaded CI machine: the file was read without its run record), so read it again for
    up to ``wait`` seconds before giving the answer.
    """
    deadline = time.monotonic() + wait
    while True:
        found = read_offline_run(offline_run_file(run_dir, run_id)).run_id
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_reads_paginate_and_count_one_request_per_page(fake, tmp_path):
    for i in range(7):
        fake.add_run(
            f"run{i:05d}", f"miner-5H{i}", {"role": "miner", "config": {"netuid": 27}}, created_at=1000 + i
        )
    store = reader(fake, tmp_path, per_page=3)
    records = store.read_runs("miner", 27)
    assert [r.run_id for r in records] == [f"run{i:05d}" for i in reversed(range(7))]
    assert fake.requests["Runs"] == 3
    assert store.request_counts() == {"auth": 1, "read": 3}
    assert fake.last_variables["Runs"]["perPage"] == 3


def test_server_side_filters_select_role_netuid_key_state_and_recent_heartbeats(fake, tmp_path):
    base = {"role": "validator", "config": {"netuid": 27}}
    fake.add_run("a0000001", "validator-a", base | {"allocated_hotkeys": ["5M"]}, heartbeat_at=5000)
    fake.add_run(
        "b0000001", "validator-b", base | {"allocated_hotkeys": []}, state="finished", heartbeat_at=100
    )
    fake.add_run("c0000001", "validator-c", base, heartbeat_at=5000)
    store = reader(fake, tmp_path)
    assert {r.run_id for r in store.read_runs("validator", 27, require_key="allocated_hotkeys")} == {
        "a0000001",
        "b0000001",
    }
    running = store.read_runs("validator", 27, running_only=True)
    assert {r.run_id for r in running} == {"a0000001", "c0000001"}
    assert {r.run_id for r in store.read_runs("validator", 27, updated_since=1000)} == {
        "a0000001",
        "c0000001",
    }
    [b] = [r for r in store.read_runs("validator", 27) if r.run_id == "b0000001"]
    assert (b.state, b.updated_at, b.name) == ("finished", 100.0, "validator-b")


def test_an_incremental_read_stops_paginating_at_the_first_run_older_than_asked(fake, tmp_path):
    base = {"role": "miner", "config": {"netuid": 27}}
    for i in range(9):  # 9 runs, 3 per page; only the two newest heartbeats are recent
        fake.add_run(f"m{i:07d}", f"miner-{i}", base, created_at=1000 + i, heartbeat_at=100 + i)
    fake.add_run("m0000003", "miner-3", base, created_at=1003, heartbeat_at=9000)
    fake.add_run("m0000005", "miner-5", base, created_at=1005, heartbeat_at=9500)
    store = reader(fake, tmp_path, per_page=3)
    records = store.read_runs("miner", 27, updated_since=5000)
    assert [r.run_id for r in records] == ["m0000005", "m0000003"]
    assert fake.requests["Runs"] == 1  # the first page already reached an old heartbeat
    assert fake.last_variables["Runs"]["order"] == "-heartbeat_at"
    assert len(store.read_runs("miner", 27)) == 9  # a full read still sees everything


def test_a_missing_api_key_is_a_config_error_at_startup_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        WandbStateStore(db_path=str(tmp_path / "s.db"))
    assert "WANDB_API_KEY" in str(err.value)
    assert time.monotonic() - started < 1.0


def test_a_key_in_netrc_for_the_api_host_is_used(tmp_path, monkeypatch, fake):
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1\n  login user\n  password {KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    store = WandbStateStore(base_url=fake.base_url, db_path=str(tmp_path / "s.db"), timeout=5)
    assert store.read_runs("miner", 27) == []


def test_outages_become_store_unavailable_with_bounded_reasons(fake, tmp_path):
    store = reader(fake, tmp_path, timeout=1)
    assert store.read_runs("miner", 27) == []
    for status, reason in ((401, "auth"), (404, "rejected"), (503, "timeout")):
        fake.down(status)
        with pytest.raises(StoreUnavailable) as err:
            store.read_runs("miner", 27)
        assert err.value.reason == reason, err.value
    fake.up()
    fake.add_run("back0001", "miner-x", {"role": "miner", "config": {"netuid": 27}})
    assert [r.run_id for r in store.read_runs("miner", 27)] == ["back0001"]


def test_an_unknown_project_is_rejected_not_retried(fake, tmp_path):
    store = reader(fake, tmp_path)
    store.project, store.entity_project = "nope", "neuralinternet/nope"
    with pytest.raises(StoreUnavailable) as err:
        store.read_runs("miner", 27)
    assert err.value.reason == "rejected"


def test_the_envelope_survives_the_wandb_config_round_trip_unchanged(fake, tmp_path):
    store = writer(tmp_path)
    pub = Publisher(store, ALICE, role="miner", netuid=27, outbox_path=str(tmp_path / "ob.db"))
    specs = {"cpu": {"count": 64, "frequency": 3500.0}, "gpu": {"count": 8, "capacity": 652472}, "ratio": 0.1}
    pub.submit({"specs": specs, "allocated": None})
    pub.flush()
    run_id = store.run_id_for("miner", ALICE.ss58_address)
    local = dict(store.local_run(ALICE.ss58_address).config)
    store.close()
    synced = read_offline_run(offline_run_file(tmp_path / "writer", run_id))
    assert synced.config[ENVELOPE_KEY] == local[ENVELOPE_KEY]
    assert set(synced.config) == {ENVELOPE_KEY}  # a run of our own: the envelope only
    assert synced.display_name == f"opencompute-exporter-miner-{ALICE.ss58_address}"
    fake.add_run(run_id, synced.display_name, synced.config)
    assert reader(fake, tmp_path).read_runs("miner", 27) == []  # the original's filters skip it
    [record] = reader(fake, tmp_path).read_exporter_runs("miner", 27)
    result = verify_run(record, entity_project=PROJECT, netuid=27, role="miner", now=time.time())
    assert result.outcome is Outcome.VALID_V2
    assert result.payload == {"specs": {**specs, "cpu": {"count": 64, "frequency": 3500}}, "allocated": None}


def test_an_online_outage_keeps_updates_in_the_outbox_and_is_bounded_by_the_timeout(fake, tmp_path):
    fake.down(503)
    store = WandbStateStore(
        base_url=fake.base_url,
        api_key=KEY,
        mode="online",
        timeout=2,
        run_dir=str(tmp_path / "online"),
        db_path=str(tmp_path / "online.db"),
    )
    pub = Publisher(store, ALICE, role="miner", netuid=27, outbox_path=str(tmp_path / "ob.db"))
    pub.submit({"a": 1})
    started = time.monotonic()
    assert pub.flush() == 0
    assert time.monotonic() - started < 10
    snap = pub.snapshot()
    assert snap["entries"] == 1 and snap["failures"]["timeout"] == 1
    assert fake.requests["Viewer"] >= 1  # it really tried the (fake) server
    assert store.request_counts()["auth"] == 1
    fake.up()
    assert pub.flush() == 1  # the server is back: the entry is published, then dropped
    assert pub.snapshot()["entries"] == 0
