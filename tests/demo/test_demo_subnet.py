"""The demo subnet: our miner is penalized by exactly one validator; lifting it is a signed republish."""

from __future__ import annotations

import time

from bittensor_core import Keypair

from exporters.core.signing import ENVELOPE_KEY, Outcome, verify_run
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.demo.orchestrator import (
    NETUID,
    PENALIZED,
    Demo,
    DemoConfig,
    choose_our_miner,
    republish_without_penalty,
)
from exporters.network.simulate import seed_network
from exporters.subnet.views import VerifiedRun, penalized_hotkeys, penalty_view


def _verified(store: SQLiteStateStore) -> list[VerifiedRun]:
    runs = []
    for record in store.read_runs("validator", NETUID):
        verdict = verify_run(
            record, entity_project=store.entity_project, netuid=NETUID, role="validator", now=time.time()
        )
        assert verdict.outcome is Outcome.VALID_V2, verdict.reason
        runs.append(VerifiedRun(record.run_id, "validator", verdict.hotkey or "", verdict.payload))
    return runs


def _penalties(store: SQLiteStateStore) -> dict[str, set[str]]:
    return penalized_hotkeys(_verified(store))


def test_our_miner_is_penalized_by_exactly_one_validator_and_the_republish_lifts_only_that(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.sqlite"))
    net = seed_network(store, validators=4, miners=16, seed=3, penalized=PENALIZED)
    chosen = choose_our_miner(net, store.read_runs("validator", NETUID))
    ours = net.miner_keys[int(chosen.uri.removeprefix("//miner"))].ss58_address
    assert chosen.allocated_by in net.validator_hotkeys, "prefer a miner that is allocated as well"
    before = _penalties(store)
    assert ours in before
    others = set(before) - {ours}
    assert others, "the simulation should penalize more than our miner"
    # The demo makes the penalizing validator the penalty authority: our penalty is enforced.
    authority = Keypair.create_from_uri(chosen.penalized_by).ss58_address
    assert ours in penalty_view(_verified(store), [authority]).enforced

    seq = republish_without_penalty(
        tmp_path / "state.sqlite", chosen.penalized_by, ours, tmp_path / "outbox.sqlite"
    )

    after = _penalties(store)
    assert ours not in after
    assert ours not in penalty_view(_verified(store), [authority]).enforced
    assert set(after) == others
    envelopes = [r.config[ENVELOPE_KEY] for r in store.read_runs("validator", NETUID)]
    assert seq == 2 and max(e["seq"] for e in envelopes) == 2
    store.close()


def test_the_banner_lists_every_url_and_our_miner(tmp_path):
    demo = Demo(DemoConfig(directory=tmp_path, echo=None))
    demo.subnet = type("S", (), {"our_miner_hotkey": "5Fabc", "our_miner_uri": "//miner5"})()  # type: ignore[assignment]
    demo.urls = {"miner exporter": "http://127.0.0.1:9927/metrics", "Prometheus": "http://127.0.0.1:19090"}
    demo.notes = ["prometheus and prometheus-alertmanager not found: running the exporters only."]
    banner = demo.banner()
    assert "http://127.0.0.1:9927/metrics" in banner and "http://127.0.0.1:19090" in banner
    assert "5Fabc (//miner5" in banner
    assert "note: prometheus and prometheus-alertmanager not found" in banner


def test_the_network_exporter_enforces_the_penalizing_validators_checklist(tmp_path):
    demo = Demo(DemoConfig(directory=tmp_path, echo=None))
    demo.subnet = demo._seed()
    authority = Keypair.create_from_uri(demo.subnet.penalizing_validator_uri).ss58_address
    assert f"--network.penalty-authority={authority}" in demo.network_args()


def test_our_miners_proof_of_gpu_matches_the_simulated_gpus_it_publishes(tmp_path):
    from exporters.demo.orchestrator import SIMULATED_MODEL
    from exporters.demo.simgpu import H100_SXM

    assert SIMULATED_MODEL == H100_SXM.name
    demo = Demo(DemoConfig(directory=tmp_path, echo=None, gpus=4))
    demo.subnet = demo._seed()
    net = demo.subnet.network
    index = int(demo.subnet.our_miner_uri.removeprefix("//miner"))
    assert net.pog[len(net.validator_keys) + index] == (SIMULATED_MODEL, 4)
    # Same story otherwise: still penalized (by exactly one validator, as chosen), declared as ours.
    store = SQLiteStateStore(str(demo.subnet.state_path))
    try:
        assert demo.subnet.our_miner_hotkey in _penalties(store)
    finally:
        store.close()
    (ours,) = [a for a in demo.network_args() if a.startswith("--network.our-hotkeys=")]
    assert demo.subnet.our_miner_hotkey in ours.split("=", 1)[1].split(",")
