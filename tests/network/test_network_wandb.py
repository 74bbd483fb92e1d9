"""The network exporter over the WandB store's GraphQL reads, against the fake GraphQL server."""

from __future__ import annotations

import copy

import pytest
from fakes.wandb_graphql import FakeWandbGraphQL
from helpers.clock import Clock

from exporters.core.signing import ENVELOPE_KEY
from exporters.core.state.wandb_store import WandbStateStore
from exporters.network import cli
from exporters.network.simulate import MemoryStateStore, seed_network


@pytest.fixture
def wandb_network(tmp_path):
    clock = Clock()
    mem = MemoryStateStore(clock=clock)
    net = seed_network(mem, validators=3, miners=8, seed=5, clock=clock)
    server = FakeWandbGraphQL()
    server.start()
    for rec in mem.read_runs("validator", 27) + mem.read_runs("miner", 27):
        server.add_run(
            rec.run_id, rec.name, rec.config, created_at=rec.created_at, heartbeat_at=rec.updated_at
        )
    store = WandbStateStore(
        base_url=server.base_url,
        api_key="k" * 40,
        timeout=1.0,  # bounds the client's retries during the simulated outage
        db_path=str(tmp_path / "s.db"),
        run_dir=str(tmp_path / "w"),
    )
    parts = cli.build_exporter({"network_state_dir": str(tmp_path)}, store=store, source=net.source())
    parts.refresher.clock = clock
    yield parts.refresher, server, net, mem
    store.close()
    server.stop()


def test_each_refresh_is_one_paginated_query_and_sees_changes_made_upstream(wandb_network):
    refresher, server, net, _ = wandb_network
    assert refresher.refresh("validator") and refresher.refresh("miner")
    assert server.requests["Runs"] == 2
    assert refresher.snapshot.runs[("validator", "v2")] == 3
    claims = dict(refresher.snapshot.allocation.claims)
    victim = net.validator_hotkeys[1]
    run = next(r for r in server.runs if r.display_name == f"validator-{victim}")
    forged = copy.deepcopy(run.config)
    forged[ENVELOPE_KEY]["payload"]["allocated_hotkeys"] = [net.miner_hotkeys[0]]
    server.add_run(run.run_id, run.display_name, forged, created_at=run.created_at)
    assert refresher.refresh("validator")
    assert server.requests["Runs"] == 3  # a fresh query, not the client's cached answer
    assert refresher.snapshot.rejected[("validator", "tampered")] == 1
    runs = refresher.snapshot.runs  # the network still counts the run (its v1 signature holds)
    assert (runs[("validator", "v2")], runs[("validator", "v1_only")]) == (2, 1)
    div = refresher.snapshot.divergence
    assert div.validators[victim] == ("tampered",)
    assert dict(refresher.snapshot.allocation.claims) == claims  # its top level did not change


def test_an_unchanged_config_is_handed_back_as_the_same_object_and_a_changed_one_is_not(wandb_network):
    refresher, server, _, _ = wandb_network
    store = refresher.store
    first = {r.run_id: r.config for r in store.read_runs("validator", 27)}
    victim = next(r for r in server.runs if r.display_name.startswith("validator-"))
    server.add_run(victim.run_id, victim.display_name, {**victim.config, "version": 191})
    again = {r.run_id: r.config for r in store.read_runs("validator", 27)}
    assert again[victim.run_id] is not first[victim.run_id]
    assert again[victim.run_id]["version"] == 191
    others = [run_id for run_id in first if run_id != victim.run_id]
    assert others and all(again[run_id] is first[run_id] for run_id in others)


def test_a_wandb_outage_keeps_the_last_snapshot_and_reports_failure(wandb_network):
    refresher, server, _, _ = wandb_network
    assert refresher.refresh("validator")
    before = refresher.snapshot
    server.down(503)  # retried by the client until the store's timeout
    assert not refresher.refresh("validator")
    after = refresher.snapshot
    assert after.stats is before.stats
    assert after.status["validator"].success is False
    assert after.status["validator"].failures == {"timeout": 1}  # the store's bounded reason


def test_a_transient_outage_shorter_than_the_timeout_is_retried_through(tmp_path):
    import threading

    server = FakeWandbGraphQL()
    server.start()
    server.add_run("v0000001", "validator-x", {"role": "validator", "config": {"netuid": 27}})
    store = WandbStateStore(
        base_url=server.base_url, api_key="k" * 40, timeout=10.0, db_path=str(tmp_path / "s.db")
    )
    try:
        assert [r.run_id for r in store.read_runs("validator", 27)] == ["v0000001"]
        server.down(503)
        threading.Timer(0.6, server.up).start()
        assert [r.run_id for r in store.read_runs("validator", 27)] == ["v0000001"]
        assert server.requests["Runs"] >= 3  # the first read, at least one refused try, the success
    finally:
        store.close()
        server.stop()
