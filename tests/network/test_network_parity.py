"""The network view equals what the original v1.9.0 validators compute, through the whole pipeline.

Every case goes store -> NetworkRefresher.refresh -> Snapshot and is compared with the
independent re-statement in ``original_sn27.py`` run on the very same runs: the same winning
entry object per uid (``is``), the same allocated and penalized hotkeys. Where the re-statement
raises (inputs that crash the original's ``get_stats_allocated``), the snapshot must say so in
``crashes`` instead. Cases are generated from a seeded RNG (many shapes of hostile values from
trusted validators), plus the named cases of issue #16.
"""

from __future__ import annotations

import math
import random
from typing import Any

import original_sn27 as original
import pytest
from helpers.clock import Clock
from network_helpers import key, record

from exporters.core.signing import sign_v1
from exporters.core.state.base import RunRecord
from exporters.network.refresh import NetworkRefresher
from exporters.network.simulate import MemoryStateStore
from exporters.subnet.trust import (
    ChainState,
    MetagraphCache,
    NeuronInfo,
    StaticValidatorSource,
    ValidatorResolver,
)
from exporters.subnet.views import MAX_UID, is_ss58

NOW = 1_750_000_000.0
HOUR = 3600.0
VALIDATORS = ["//pv0", "//pv1", "//pv2", "//pv3", "//pv4"]
# (permit, total stake) per validator: trusted, exactly the threshold, no permit but stake, low, trusted
STAKES = [(True, 5.0e4), (True, 1.0e4), (False, 2.0e4), (True, 5.0e2), (True, 1.0e4 + 0.5)]
MINERS = [key(f"//pm{i}").ss58_address for i in range(6)]
AUTHORITY = "//pv0"


def hk(uri: str) -> str:
    return key(uri).ss58_address


def metagraph() -> list[tuple[str, float]]:
    return [(hk(uri), stake) for uri, (_, stake) in zip(VALIDATORS, STAKES, strict=True)]


def refresher(store: MemoryStateStore, tmp_path, clock: Clock) -> NetworkRefresher:
    neurons = {
        hk(uri): NeuronInfo(i, permit, stake)
        for i, (uri, (permit, stake)) in enumerate(zip(VALIDATORS, STAKES, strict=True))
    }
    neurons.update({m: NeuronInfo(10 + i, False, 0.0) for i, m in enumerate(MINERS)})
    source = StaticValidatorSource(ChainState(27, neurons, 1, clock()), clock=clock)
    resolver = ValidatorResolver(source, MetagraphCache(tmp_path / "state"))
    return NetworkRefresher(
        store,
        resolver,
        clock=clock,
        timer=lambda: 0.0,
        penalty_authorities=(hk(AUTHORITY),),
        max_run_age=86400.0,
    )


def v1_run(
    uri: str, config: dict[str, Any], run_id: str, created_at: float, *, signature: str | None = None
) -> RunRecord:
    """A run as the original neuron writes it: top-level keys, v1 signature, no envelope."""
    kp = key(uri)
    body = {"hotkey": kp.ss58_address, "role": "validator", "config": {"netuid": 27}, "version": 190}
    body["signature"] = sign_v1(kp, run_id) if signature is None else signature
    body.update(config)
    return RunRecord(run_id, f"validator-{kp.ss58_address}", body, "running", created_at, created_at)


def pipeline(records: list[RunRecord], tmp_path, clock: Clock | None = None):
    store = MemoryStateStore()
    store.put_many(records)
    r = refresher(store, tmp_path, clock or Clock(NOW))
    assert r.refresh("validator")
    return r.snapshot


def assert_parity(records: list[RunRecord], tmp_path, clock: Clock | None = None):
    """The snapshot equals the original's three readers on ``records`` (or flags its crash)."""
    snap = pipeline(records, tmp_path, clock)
    valid = original.valid_validator_hotkeys(metagraph())
    allocated = original.get_allocated_hotkeys(records, valid)
    assert set(snap.allocation.claims) == {x for x in allocated if isinstance(x, str) and is_ss58(x)}
    penalized = original.get_penalized_hotkeys_checklist_bak(records, hk(AUTHORITY))
    assert snap.penalties.enforced == {x for x in penalized if isinstance(x, str) and is_ss58(x)}
    try:
        expected = original.get_stats_allocated(records, valid)
    except original.OriginalCrashed:
        assert sum(snap.crashes.values()) > 0, "the original crashes here; the snapshot must say so"
        return snap, None
    assert sum(snap.crashes.values()) == 0
    exportable = {uid: entry for uid, entry in expected.items() if 0 <= uid <= MAX_UID}
    assert set(snap.stats) == set(exportable)
    for uid, entry in exportable.items():
        assert snap.stats[uid].entry is entry, f"uid {uid}: a different winning entry"
        score = entry.get("score", 0)
        finite = (
            isinstance(score, int | float)
            and not isinstance(score, bool)
            and math.isfinite(score)
            and score >= 0
        )
        assert snap.stats[uid].score == (float(score) if finite else None)
    return snap, expected


# --- generated cases ------------------------------------------------------------------------

_SCORES = [10, 10, 20, 20.0, 35.5, 0, -5, math.inf, math.nan, "20", None, True, 1e4]
_NAMES = ["H100", "H100", "A100", None, 5]
_COUNTS = [1, 8, 8, 8.0, -8, "8", None]


def _specs(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.9:
        specs = {"gpu_name": rng.choice(_NAMES), "num_gpus": rng.choice(_COUNTS)}
        if rng.random() < 0.1:
            del specs["num_gpus"]
        return specs
    return rng.choice([None, None, "H100", [], ["x"], 0, {}, 3])


def _entry(rng: random.Random, uid: int) -> Any:
    if rng.random() < 0.04:
        return rng.choice(["junk", None, [1], 5])
    entry: dict[str, Any] = {"uid": uid, "hotkey": MINERS[uid % len(MINERS)]}
    if rng.random() < 0.95:
        entry["own_score"] = rng.choice([True] * 12 + [False, 1, "True", None])
    if rng.random() < 0.95:
        entry["allocated"] = rng.choice([True] * 8 + [False, 1])
    if rng.random() < 0.95:
        entry["score"] = rng.choice(_SCORES[:5] * 3 + _SCORES)
    if rng.random() < 0.95:
        entry["gpu_specs"] = _specs(rng)
    return entry


def _uid_key(rng: random.Random) -> tuple[str, int]:
    uid = rng.randrange(4)
    roll = rng.random()
    if roll < 0.03:
        return "abc", uid
    if roll < 0.05:
        return rng.choice(["05", "-1", "5000"]), uid
    return str(uid), uid


def _stats(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice([["x"], "stats", {}, None])
    out: dict[str, Any] = {}
    for _ in range(rng.randrange(2, 8)):
        name, uid = _uid_key(rng)
        out[name] = _entry(rng, uid)
    return out


def _allocated(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.75:
        return rng.sample(MINERS, rng.randrange(0, 3))
    return rng.choice(["5Fnot-a-list", {MINERS[5]: 1}, 7, None])


def _case(seed: int) -> list[RunRecord]:
    rng = random.Random(seed)
    records = []
    for n in range(rng.randrange(1, 7)):
        uri = rng.choice([*VALIDATORS, "//pv0", "//pv2", "//pv4"])  # mostly trusted ones
        config: dict[str, Any] = {}
        if rng.random() < 0.9:
            config["stats"] = _stats(rng)
        if rng.random() < 0.6:
            config["allocated_hotkeys"] = _allocated(rng)
        if uri == AUTHORITY and rng.random() < 0.7:
            config["penalized_hotkeys_checklist"] = rng.choice(
                [[MINERS[1]], [{"hotkey": MINERS[2], "status_code": "PORT_CLOSED"}, MINERS[3]], "x", []]
            )
        signature = None
        roll = rng.random()
        if roll < 0.08:
            signature = sign_v1(key("//intruder"), f"r{seed}x{n}")  # someone else's signature
        elif roll < 0.1:
            signature = ""
        created = NOW - rng.choice([0, 60, 600, 25 * HOUR, 30 * 86400]) - n  # distinct, some very old
        records.append(v1_run(uri, config, f"r{seed}x{n}", created, signature=signature))
    return records


@pytest.mark.parametrize("chunk", range(8))
def test_the_pipeline_equals_the_original_on_generated_hostile_networks(chunk, tmp_path):
    compared = decided = contested = 0
    for seed in range(chunk * 50, chunk * 50 + 50):
        snap, expected = assert_parity(_case(seed), tmp_path / str(seed))
        compared += expected is not None
        decided += bool(expected)
        contested += sum(1 for s in snap.stats.values() if s.reporting > 1 or s.agreeing > 1)
    # most cases are compared, many have winners, some uids are contested
    assert compared >= 35 and decided >= 12 and contested >= 3


def test_the_generated_cases_include_inputs_that_crash_the_original():
    valid = original.valid_validator_hotkeys(metagraph())
    crashed = 0
    for seed in range(400):
        try:
            original.get_stats_allocated(_case(seed), valid)
        except original.OriginalCrashed:
            crashed += 1
    assert 5 <= crashed <= 120


# --- the named cases ------------------------------------------------------------------------


def entry(name: str = "H100", gpus: Any = 8, score: Any = 80, **extra: Any) -> dict[str, Any]:
    return {
        "gpu_specs": {"gpu_name": name, "num_gpus": gpus},
        "score": score,
        "own_score": True,
        "allocated": True,
        **extra,
    }


def test_two_runs_of_one_validator_both_vote(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"3": entry("A100", 4, 40)}}, "old", NOW - 100),
        v1_run("//pv0", {"stats": {"3": entry("A100", 4, 40)}}, "new", NOW - 10),
        v1_run("//pv4", {"stats": {"3": entry("H100", 8, 80)}}, "other", NOW - 50),
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert snap.stats[3].gpu_name == "A100" and snap.stats[3].agreeing == 2  # two votes from one hotkey
    assert snap.divergence.counts["stats"] == 1  # one vote per hotkey: a 1-1 tie, the higher score wins
    assert snap.divergence.validators[hk("//pv0")] == ("duplicate_run",)
    assert snap.divergence.uids == {3: "duplicate_run"}


def test_stake_exactly_the_threshold_is_not_trusted_and_above_it_without_a_permit_is(tmp_path):
    records = [
        v1_run("//pv1", {"stats": {"1": entry()}, "allocated_hotkeys": [MINERS[0]]}, "exact", NOW),
        v1_run("//pv2", {"stats": {"2": entry()}, "allocated_hotkeys": [MINERS[1]]}, "nopermit", NOW - 1),
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert set(snap.stats) == {2} and set(snap.allocation.claims) == {MINERS[1]}
    assert snap.divergence.validators == {hk("//pv2"): ("no_permit",)}
    assert snap.divergence.counts == {"allocation": 1, "stats": 1, "penalty": 0}


def test_a_25_hour_old_run_still_counts(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"4": entry()}, "allocated_hotkeys": [MINERS[2]]}, "aged", NOW - 25 * HOUR)
    ]
    record_ = records[0]
    records[0] = RunRecord(
        record_.run_id, record_.name, record_.config, "crashed", record_.created_at, NOW - 25 * HOUR
    )
    snap, _ = assert_parity(records, tmp_path)
    assert 4 in snap.stats and MINERS[2] in snap.allocation.claims
    assert snap.divergence.validators[hk("//pv0")] == ("stale",)


def test_a_string_score_stops_reading_that_run_like_the_original(tmp_path):
    stats = {"1": entry(score=50), "2": entry(score="80"), "3": entry(score=60)}
    snap, _ = assert_parity([v1_run("//pv0", {"stats": stats}, "s", NOW)], tmp_path)
    assert set(snap.stats) == {1}  # uid 3 comes after the raising comparison
    assert snap.bad_input_total["score_not_number"] == 1


def test_a_string_score_on_an_entry_that_does_not_vote_is_counted_but_stops_nothing(tmp_path):
    stats = {"1": {**entry(score="80"), "own_score": False}, "3": entry(score=60)}
    snap, _ = assert_parity([v1_run("//pv0", {"stats": stats}, "s", NOW)], tmp_path)
    assert set(snap.stats) == {3}  # own_score is tested first: the comparison never runs
    assert snap.bad_input_total["score_not_number"] == 1


def test_a_non_dict_entry_stops_reading_that_run(tmp_path):
    stats = {"1": entry(), "2": "junk", "3": entry()}
    snap, _ = assert_parity([v1_run("//pv0", {"stats": stats}, "s", NOW)], tmp_path)
    assert set(snap.stats) == {1}
    assert snap.bad_input_total["stats_entry_not_object"] == 1


def test_a_string_gpu_specs_votes_then_stops_reading_that_run(tmp_path):
    stats = {"1": {**entry(), "gpu_specs": "H100"}, "2": entry()}
    records = [
        v1_run("//pv0", {"stats": stats}, "a", NOW - 10),
        v1_run("//pv4", {"stats": {"2": entry("A100", 1, 10)}}, "b", NOW),
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert set(snap.stats) == {1, 2}
    assert snap.stats[2].gpu_name == "A100"  # pv0's uid 2 was never read: the trace line raised
    assert snap.stats[1].gpu_name == "" and snap.stats[1].gpu_count is None
    assert snap.bad_input_total["gpu_specs_invalid"] == 1


def test_a_contested_string_gpu_specs_crashes_the_original_and_is_skipped_here(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"1": {**entry(), "gpu_specs": "H100"}}}, "a", NOW - 10),
        v1_run("//pv4", {"stats": {"1": entry("A100", 1, 10)}}, "b", NOW),
    ]
    snap, expected = assert_parity(records, tmp_path)
    assert expected is None and snap.crashes["gpu_specs_invalid"] == 1
    assert snap.stats[1].gpu_name == "A100"


def test_an_infinite_score_votes_but_is_not_exported_and_is_counted(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"1": entry(score=math.inf)}}, "a", NOW - 10),
        v1_run("//pv4", {"stats": {"1": entry(score=math.inf), "2": entry(score=30)}}, "b", NOW),
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert snap.stats[1].score is None and snap.stats[1].agreeing == 2
    assert snap.stats[1].spread == 0.0  # no +Inf - +Inf = NaN, no +Inf spread
    assert snap.bad_input_total["score_not_finite"] == 2


def test_a_negative_gpu_count_votes_but_is_not_exported_and_is_counted(tmp_path):
    snap, _ = assert_parity([v1_run("//pv0", {"stats": {"1": entry(gpus=-8)}}, "a", NOW)], tmp_path)
    assert snap.stats[1].gpu_count is None and snap.stats[1].score == 80
    assert snap.bad_input_total["gpu_count_invalid"] == 1


def test_null_gpu_specs_uncontested_is_the_winner_and_is_counted(tmp_path):
    snap, _ = assert_parity(
        [v1_run("//pv0", {"stats": {"1": {**entry(), "gpu_specs": None}}}, "a", NOW)], tmp_path
    )
    assert snap.stats[1].gpu_name == "" and snap.stats[1].score == 80
    assert snap.bad_input_total["gpu_specs_null"] == 1
    assert snap.crashes["gpu_specs_null"] == 0  # uncontested: the original does not crash


def test_ties_go_to_the_entry_of_the_oldest_run_as_wandb_0_19_returns_them(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"1": entry("H100", 8, 80)}}, "newer", NOW),
        v1_run("//pv4", {"stats": {"1": entry("A100", 8, 80)}}, "older", NOW - 600),
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert snap.stats[1].gpu_name == "A100"  # api.runs() default order is +created_at


def test_a_broken_v1_signature_with_a_valid_v2_envelope_is_not_counted_by_the_network(tmp_path):
    rec = record("//pv0", "validator", {"stats": {"1": entry()}}, run_id="env", now=NOW, created_at=NOW)
    rec.config["signature"] = "00" * 64
    snap, _ = assert_parity([rec], tmp_path)
    assert snap.stats == {}
    assert snap.divergence.uids == {1: "other"}  # the strict reading has it from the envelope


def test_the_miner_exporters_allocation_follows_the_same_reading(tmp_path):
    from exporters.miner.allocation import AllocationSource

    records = [
        v1_run("//pv2", {"allocated_hotkeys": [MINERS[0]]}, "nopermit", NOW - 25 * HOUR),
        v1_run("//pv1", {"allocated_hotkeys": [MINERS[1]]}, "exact", NOW),
    ]
    store = MemoryStateStore()
    store.put_many(records)
    network = refresher(store, tmp_path, Clock(NOW))
    seen = {}
    for miner in (MINERS[0], MINERS[1]):
        source = AllocationSource(store, network.resolver, miner, clock=Clock(NOW))
        assert source.refresh()
        seen[miner] = source.current.validator_hotkey
    valid = original.valid_validator_hotkeys(metagraph())
    listed = original.get_allocated_hotkeys(records, valid)
    assert {m for m, v in seen.items() if v} == set(listed) == {MINERS[0]}
    assert seen[MINERS[0]] == hk("//pv2")


def test_a_second_run_without_any_key_the_original_reads_is_no_duplicate(tmp_path):
    records = [
        v1_run("//pv0", {"stats": {"1": entry()}}, "neuron", NOW - 100),
        v1_run("//pv0", {"note": "another publisher's run"}, "own", NOW),  # no stats/allocated/penalty keys
    ]
    snap, _ = assert_parity(records, tmp_path)
    assert snap.divergence.validators == {}
