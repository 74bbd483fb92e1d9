"""The real online write path: real wandb clients (``wandb.init`` and ``wandb.Api``) against the fake server.

Our exporters publish into runs of their own; the SN27 neuron keeps writing ``{role}-{hotkey}``
exactly as ``ComputeWandb`` does. These tests show the two never touch each other's data and
that the original's readers return the same runs with or without ours beside them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from bittensor_core import Keypair
from fakes.wandb_graphql import FakeWandbGraphQL
from helpers.clock import Clock

from exporters.core.publish import Publisher
from exporters.core.signing import ENVELOPE_KEY, Outcome, sign_v1, verify_run
from exporters.core.state.wandb_store import WandbStateStore

PROJECT = "neuralinternet/opencompute"
KEY = "k" * 40
VALIDATOR = Keypair.create_from_uri("//Alice")
MINER = Keypair.create_from_uri("//Bob")
NI = "5GmvyePN9aYErXBBhBnxZKGoGk4LKZApE4NkaSzW62CYCYNA"


@pytest.fixture(autouse=True)
def online_env(tmp_path, monkeypatch, fake):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", fake.base_url)
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("WANDB_HTTP_TIMEOUT", "10")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    (tmp_path / "wandb-dir").mkdir()


def online_store(fake, tmp_path, name="exporter") -> WandbStateStore:
    return WandbStateStore(
        base_url=fake.base_url, api_key=KEY, timeout=10, db_path=str(tmp_path / f"{name}.db")
    )


def publisher(store, tmp_path, keypair, role, clock, name="ob") -> Publisher:
    return Publisher(
        store, keypair, role=role, netuid=27, outbox_path=str(tmp_path / f"{name}.db"), clock=clock
    )


# --------------------------------------------------------------------------- the original's readers


def original_filters(netuid: int = 27) -> dict[str, dict]:
    """Every server-side filter of the original (original-system.md §1.2, §1.3, §3.1), re-stated."""
    role_net = [{"config.config.netuid": netuid}]
    return {
        "get_run_id(validator)": {
            "$and": [*role_net, {"display_name": f"validator-{VALIDATOR.ss58_address}"}]
        },
        "get_run_id(miner)": {"$and": [*role_net, {"display_name": f"miner-{MINER.ss58_address}"}]},
        "get_allocated_hotkeys": {
            "$and": [{"config.role": "validator"}, *role_net, {"config.allocated_hotkeys": {"$exists": True}}]
        },
        "get_stats_allocated": {
            "$and": [{"config.role": "validator"}, *role_net, {"config.stats": {"$exists": True}}]
        },
        "get_penalized_hotkeys": {
            "$and": [{"config.role": "validator"}, *role_net, {"config.penalized_hotkeys": {"$exists": True}}]
        },
        "get_penalized_hotkeys_checklist_bak": {
            "$and": [
                {"config.role": "validator"},
                *role_net,
                {"config.penalized_hotkeys_checklist": {"$exists": True}},
                {"config.hotkey": {"$in": [NI]}},
            ]
        },
        "get_miner_specs": {"$and": [{"config.role": "miner"}, *role_net, {"state": "running"}]},
    }


def read_like_the_original() -> dict[str, list[tuple[str, str, str]]]:
    """What each original reader gets: (run id, display name, config) per run, in API order."""
    import wandb

    api = wandb.Api(timeout=10)
    out = {}
    for reader, filters in original_filters().items():
        api.flush()
        runs = api.runs(PROJECT, filters=filters)  # the original's defaults: -created_at, 50 per page
        out[reader] = [(r.id, r.name, json.dumps(dict(r.config), sort_keys=True)) for r in runs]
    return out


def seed_neuron_runs(fake: FakeWandbGraphQL) -> None:
    """Neuron runs as ComputeWandb writes them, with v1 signatures, plus NI's checklist run."""
    base = {"config": {"netuid": 27, "subtensor": {"network": "finney"}}, "version": 190}
    fake.add_run(
        "val00001",
        f"validator-{VALIDATOR.ss58_address}",
        base
        | {
            "hotkey": VALIDATOR.ss58_address,
            "role": "validator",
            "allocated_hotkeys": [MINER.ss58_address],
            "stats": {"0": {"uid": 0, "hotkey": MINER.ss58_address, "score": 40.0, "allocated": True}},
            "penalized_hotkeys": [],
            "signature": sign_v1(VALIDATOR, "val00001"),
            "unexpected_key": {"left": "alone"},
        },
        created_at=1_760_000_000,
    )
    fake.add_run(
        "min00001",
        f"miner-{MINER.ss58_address}",
        base
        | {
            "hotkey": MINER.ss58_address,
            "role": "miner",
            "specs": {"gpu": {"count": 8, "details": [{"name": "NVIDIA H100", "capacity": 81559}]}},
            "allocated": None,
            "signature": sign_v1(MINER, "min00001"),
        },
        created_at=1_760_000_100,
    )
    fake.add_run(
        "0djlnjjs",
        f"validator-{NI}",
        base | {"hotkey": NI, "role": "validator", "penalized_hotkeys_checklist": [], "signature": "00" * 64},
        created_at=1_700_000_000,
    )


def test_the_originals_readers_return_exactly_what_they_return_without_our_runs(fake, tmp_path):
    seed_neuron_runs(fake)
    before = read_like_the_original()
    assert [r[0] for r in before["get_stats_allocated"]] == ["val00001"]  # the filters select something
    assert [r[0] for r in before["get_miner_specs"]] == ["min00001"]

    clock = Clock(time.time())
    store = online_store(fake, tmp_path)
    for keypair, role, payload in (
        (VALIDATOR, "validator", {"allocated_hotkeys": [MINER.ss58_address], "stats": {}}),
        (MINER, "miner", {"specs": {"gpu": {"count": 8}}, "allocated": VALIDATOR.ss58_address}),
    ):
        pub = publisher(store, tmp_path, keypair, role, clock, name=f"ob-{role}")
        pub.submit(payload)
        assert pub.flush() == 1
    ours = [r for r in fake.runs if r.display_name.startswith("opencompute-exporter-")]
    assert len(ours) == 2 and all(set(r.config) == {ENVELOPE_KEY} for r in ours)

    assert read_like_the_original() == before
    # the neuron's runs were never written
    assert all(fake.run(i).config_writes == 0 for i in ("val00001", "min00001", "0djlnjjs"))
    # and our reader finds ours, signed (v2), bound to the hotkey by the envelope alone
    [mine] = store.read_exporter_runs("miner", 27)
    result = verify_run(mine, entity_project=PROJECT, netuid=27, role="miner", now=clock())
    assert (result.outcome, result.hotkey) == (Outcome.VALID_V2, MINER.ss58_address)


# --------------------------------------------------------------------------- two writers, one day

NEURON = textwrap.dedent(
    """
    # Writes exactly as ComputeWandb does (original-system.md 1.2-1.3): resume the run by id,
    # set the name, config.update(..., allow_val_change=True), re-sign after every update.
    import hashlib, json, sys, time
    import wandb
    from bittensor_core import Keypair

    run_id, hotkey_uri, cycles, restart_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    keypair = Keypair.create_from_uri(hotkey_uri)
    hotkey = keypair.ss58_address
    settings = wandb.Settings(init_timeout=30, x_disable_stats=True, console="off", x_disable_meta=True,
                              x_save_requirements=False, disable_git=True)

    def open_run():
        run = wandb.init(project="opencompute", entity="neuralinternet", id=run_id, resume="allow",
                         settings=settings)
        run.name = f"validator-{hotkey}"
        run.config.update({"hotkey": hotkey, "role": "validator", "config": {"netuid": 27},
                           "version": 190}, allow_val_change=True)
        sign(run)
        return run

    def sign(run):
        digest = hashlib.sha256(run.id.encode()).digest()
        run.config.update({"signature": bytes(keypair.sign(digest)).hex()}, allow_val_change=True)
        run.log({"dummy_metric": 0})

    run = open_run()
    updates = 0
    for cycle in range(cycles):  # one sync_scores every ~20 minutes: two allocation updates each
        if cycle == restart_at:  # the neuron restarts mid-day and resumes its run
            run.finish()
            run = open_run()
        for half in range(2):
            allocated = [f"5Miner{(cycle + k) % 7}" for k in range(cycle % 4)]
            stats = {str(uid): {"uid": uid, "score": float(cycle + uid), "allocated": uid < len(allocated)}
                     for uid in range(8)}
            run.config.update({"allocated_hotkeys": allocated, "stats": stats}, allow_val_change=True)
            sign(run)
            updates += 1
        time.sleep(0.1)  # ~7 s in all: its debounced upserts (every 5 s) interleave with ours
    run.finish()
    print(json.dumps({"updates": updates}))
    """
)


def neuron(tmp_path: Path, run_id: str, cycles: int, restart_at: int) -> subprocess.Popen:
    env = dict(os.environ, WANDB_DIR=str(tmp_path / "wandb-dir"))
    return subprocess.Popen(
        [sys.executable, "-c", NEURON, run_id, "//Alice", str(cycles), str(restart_at)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def user_config(fake: FakeWandbGraphQL, run_id: str) -> dict:
    run = fake.run(run_id)
    assert run is not None
    return json.loads(json.dumps(run.config))


CYCLES = 72  # a day of sync_scores at ~20 minutes
EXPORTER_PUBLISHES = 48  # a day at --validator.publish-interval=30m


def test_the_neurons_run_and_ours_written_side_by_side_for_a_day_lose_nothing(fake, tmp_path, capsys):
    # baseline: the neuron alone
    alone = neuron(tmp_path, "base0001", CYCLES, CYCLES // 2)
    out, err = alone.communicate(timeout=120)
    assert alone.returncode == 0, err[-2000:]
    baseline = user_config(fake, "base0001")
    assert "panic" not in err  # wandb-core shut down cleanly against the fake
    requests_alone = sum(fake.requests.values())

    # the neuron again, now with our exporter publishing beside it (same hotkey)
    started = time.monotonic()
    proc = neuron(tmp_path, "live0001", CYCLES, CYCLES // 2)
    clock = Clock(time.time())
    store = online_store(fake, tmp_path)
    pub = publisher(store, tmp_path, VALIDATOR, "validator", clock)
    written = []
    for i in range(EXPORTER_PUBLISHES):
        state = {"allocated_hotkeys": [f"5Miner{i % 5}"], "stats": {"0": {"score": float(i)}}, "n": i}
        pub.submit(state)
        assert pub.flush() == 1, pub.snapshot()
        env = fake.runs_named(f"opencompute-exporter-validator-{VALIDATOR.ss58_address}")[0].config[
            ENVELOPE_KEY
        ]
        assert env["payload"]["n"] == i  # acknowledged means the server holds it now
        written.append(env["seq"])
        clock.now += 1800
    exporter_seconds = time.monotonic() - started
    out, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, err[-2000:]
    assert "panic" not in err
    neuron_updates = json.loads(out.strip().splitlines()[-1])["updates"]

    # the neuron's run ends exactly as without us: same keys, same values (signature aside:
    # sr25519 signatures are randomised, so compare that it verifies)
    live = user_config(fake, "live0001")
    assert set(live) == set(baseline)
    assert {k: v for k, v in live.items() if k != "signature"} == {
        k: v for k, v in baseline.items() if k != "signature"
    }
    assert ENVELOPE_KEY not in live
    from exporters.core.signing import verify_v1

    assert verify_v1(live["hotkey"], live["signature"], "live0001")
    # ours holds our last write, nothing of the neuron's, and every seq only grew
    [ours] = fake.runs_named(f"opencompute-exporter-validator-{VALIDATOR.ss58_address}")
    assert set(ours.config) == {ENVELOPE_KEY}
    assert ours.config[ENVELOPE_KEY]["payload"]["n"] == EXPORTER_PUBLISHES - 1
    assert written == sorted(written) and len(set(written)) == EXPORTER_PUBLISHES
    assert fake.run("live0001").config_writes >= 2 and ours.config_writes == EXPORTER_PUBLISHES
    assert dict(fake.unhandled) == {}
    with capsys.disabled():
        print(
            f"\ntwo writers, one simulated day: neuron {neuron_updates} config updates "
            f"({fake.run('live0001').config_writes} UpsertBucket config writes reached the server, "
            f"debounced by wandb-core), exporter {EXPORTER_PUBLISHES} acknowledged publishes "
            f"({dict(store.request_counts())}); server requests alone {requests_alone}, "
            f"total {sum(fake.requests.values())} {dict(fake.requests)}; exporter {exporter_seconds:.1f} s, "
            f"both {elapsed:.1f} s"
        )


# --------------------------------------------------------------------------- bad input


def test_a_second_exporter_with_the_same_hotkey_is_refused_and_reported_not_flip_flopped(fake, tmp_path):
    clock = Clock(time.time())
    first = publisher(online_store(fake, tmp_path, "a"), tmp_path, MINER, "miner", clock, name="ob-a")
    second = publisher(online_store(fake, tmp_path, "b"), tmp_path, MINER, "miner", clock, name="ob-b")
    first.submit({"allocated": None})
    assert first.flush() == 1
    second.submit({"allocated": "5Other"})
    assert second.flush() == 0  # the first one wrote a moment ago: no takeover
    assert second.snapshot()["failures"]["conflict"] == 1
    first.submit({"allocated": None, "x": 1})
    assert first.flush() == 1  # the first keeps publishing; the run never flip-flops
    [run] = fake.runs_named(f"opencompute-exporter-miner-{MINER.ss58_address}")
    assert run.config[ENVELOPE_KEY]["payload"] == {"allocated": None, "x": 1}
    # the first stops; after takeover_after without writes the second adopts its sequence
    clock.now += 1300
    assert second.flush() == 1
    assert run.config[ENVELOPE_KEY]["seq"] == first.sequence + 1
    first.submit({"late": True})
    assert first.flush() == 0 and first.snapshot()["failures"]["conflict"] == 1


def test_a_run_with_our_name_signed_by_another_hotkey_is_never_adopted(fake, tmp_path):
    squatter = Keypair.create_from_uri("//Mallory")
    clock = Clock(time.time())
    spoof = publisher(online_store(fake, tmp_path, "m"), tmp_path, squatter, "miner", clock, name="ob-m")
    spoof.submit({"allocated": "5Evil"})
    spoof.flush()
    [squat] = fake.runs_named(f"opencompute-exporter-miner-{squatter.ss58_address}")
    squat.display_name = f"opencompute-exporter-miner-{MINER.ss58_address}"  # squat on Bob's name

    pub = publisher(online_store(fake, tmp_path), tmp_path, MINER, "miner", clock)
    pub.submit({"allocated": None})
    assert pub.flush() == 1
    runs = fake.runs_named(f"opencompute-exporter-miner-{MINER.ss58_address}")
    assert len(runs) == 2
    assert squat.config[ENVELOPE_KEY]["hotkey"] == squatter.ss58_address  # left alone
    [mine] = [r for r in runs if r.run_id != squat.run_id]
    assert mine.config[ENVELOPE_KEY]["hotkey"] == MINER.ss58_address


def test_wandb_rejecting_writes_keeps_every_update_in_the_outbox(fake, tmp_path):
    clock = Clock(time.time())
    pub = publisher(online_store(fake, tmp_path), tmp_path, MINER, "miner", clock)
    pub.submit({"a": 0})
    assert pub.flush() == 1
    fake.reject("UpsertBucket", 400)
    for i in range(1, 4):
        pub.submit({"a": i, f"k{i}": i})
        assert pub.flush() == 0
    snap = pub.snapshot()
    assert snap["entries"] == 3 and snap["failures"]["rejected"] == 3 and snap["seq"] == 1
    fake.up()
    assert pub.flush() == 3
    [run] = fake.runs_named(f"opencompute-exporter-miner-{MINER.ss58_address}")
    assert run.config[ENVELOPE_KEY]["payload"] == {"a": 3, "k1": 1, "k2": 2, "k3": 3}


def test_into_the_neurons_run_only_our_keys_change_and_a_concurrent_change_is_a_conflict(fake, tmp_path):
    seed_neuron_runs(fake)
    store = online_store(fake, tmp_path)
    store._WandbRun.insert(hotkey=VALIDATOR.ss58_address, run_id="val00001").execute()
    with pytest.raises(ValueError, match="into_neuron_run"):
        Publisher(
            store, VALIDATOR, role="validator", netuid=27, outbox_path=str(tmp_path / "x.db"), mode="full"
        )
    pub = Publisher(
        store,
        VALIDATOR,
        role="validator",
        netuid=27,
        outbox_path=str(tmp_path / "ob.db"),
        mode="full",
        into_neuron_run=True,
        version=999,
    )
    theirs = user_config(fake, "val00001")
    pub.submit({"penalized_hotkeys": ["5Bad"]})
    assert pub.flush() == 1
    after = user_config(fake, "val00001")
    assert after["penalized_hotkeys"] == ["5Bad"] and ENVELOPE_KEY in after
    for key in ("version", "config", "stats", "allocated_hotkeys", "unexpected_key", "role"):
        assert after[key] == theirs[key], key  # never overwritten, never rolled back

    # the neuron writes between our read and our write: refused (it would be rolled back)
    fetches = []
    real_fetch = store._fetch

    def neuron_writes_after_our_first_read(run_id, operation="read"):
        run = real_fetch(run_id, operation)
        fetches.append(run_id)
        if len(fetches) == 1:
            fake.run("val00001").config["allocated_hotkeys"] = ["5Neuron"]
        return run

    store._fetch = neuron_writes_after_our_first_read
    pub.submit({"penalized_hotkeys": []})
    assert pub.flush() == 0
    store._fetch = real_fetch
    assert user_config(fake, "val00001")["allocated_hotkeys"] == ["5Neuron"]  # not rolled back
    assert user_config(fake, "val00001")["penalized_hotkeys"] == ["5Bad"]  # and nothing half-written
    assert pub.snapshot()["failures"]["conflict"] == 1


def test_two_of_our_runs_signed_by_one_hotkey_are_reported_as_duplicate_and_the_higher_seq_wins(
    fake, tmp_path
):
    from exporters.core.signing import make_envelope
    from exporters.network.attestation import AttestationCollector, AttestationRefresher

    seed_neuron_runs(fake)  # Bob's neuron run publishes 8 x H100
    now = time.time()
    name = f"opencompute-exporter-miner-{MINER.ss58_address}"
    for run_id, seq, count in (("dup00001", 1, 8), ("dup00002", 2, 4)):
        env = make_envelope(
            MINER,
            entity_project=PROJECT,
            netuid=27,
            run_id=run_id,
            role="miner",
            payload={"specs": {"gpu": {"count": count, "details": [{"name": "NVIDIA H100"}]}}},
            seq=seq,
            signed_at=now,
        )
        fake.add_run(run_id, name, {ENVELOPE_KEY: env}, created_at=now - 10 + seq)
    store = online_store(fake, tmp_path)
    refresher = AttestationRefresher(
        store, lambda: (frozenset(), {MINER.ss58_address: 3}), netuid=27, max_run_age=None
    )
    assert refresher.refresh()
    cur = refresher.current
    assert cur.runs[("miner", "duplicate")] == 1 and cur.runs[("miner", "valid")] == 1
    assert cur.matches[("miner", MINER.ss58_address, "gpu_count")] is False  # seq 2 (4 GPUs) won
    assert cur.matches[("miner", MINER.ss58_address, "gpu_model")] is True
    assert list(AttestationCollector(refresher).collect())
