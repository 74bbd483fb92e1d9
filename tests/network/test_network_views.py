"""Pure aggregation: parity with the original's vote, and bad input skipped instead of crashing."""

from __future__ import annotations

import copy
import itertools
import random

import pytest

from exporters.subnet import views
from exporters.subnet.views import (
    Issues,
    MinerSpec,
    UidStats,
    VerifiedRun,
    allocated_hotkeys,
    allocation_view,
    claim_mismatches,
    compat_stats_allocated,
    penalized_hotkeys,
    pick_dominant_dict,
    specs_view,
    stats_view,
)

HK = [f"5{chr(ord('A') + i)}" + "x" * 46 for i in range(20)]  # ss58-shaped (base58, 48 chars)
V1, V2, V3 = HK[0], HK[1], HK[2]


# --- an independent re-implementation, written from the reference description (§3.1, §3.2) ----


def reference_pick(entries: list[dict]) -> dict:
    """Count (gpu_name, num_gpus, score) per entry; most votes win; ties -> highest score, then
    the combination seen first; return the first entry with that combination, own_score set."""
    combos: list[tuple] = []
    votes: list[int] = []
    for e in entries:
        specs = e["gpu_specs"] if "gpu_specs" in e else {}
        combo = (specs.get("gpu_name"), specs.get("num_gpus"), e["score"] if "score" in e else 0)
        for i, seen in enumerate(combos):
            if seen == combo:
                votes[i] += 1
                break
        else:
            combos.append(combo)
            votes.append(1)
    best = max(votes)
    tied = [combos[i] for i in range(len(combos)) if votes[i] == best]
    winner = tied[0]
    for combo in tied[1:]:
        if combo[2] > winner[2]:
            winner = combo
    for e in entries:
        specs = e["gpu_specs"] if "gpu_specs" in e else {}
        if (specs.get("gpu_name"), specs.get("num_gpus"), e["score"] if "score" in e else 0) == winner:
            e["own_score"] = True
            return e
    raise AssertionError


def reference_stats_allocated(runs: list[tuple[str, dict]]) -> dict[int, dict]:
    by_uid: dict[str, list[dict]] = {}
    for _, stats in runs:
        if not stats:
            continue
        for uid, d in stats.items():
            if d.get("own_score") is True and d.get("score", 0) > 0 and d.get("allocated") is True:
                by_uid.setdefault(uid, []).append(d)
    out = {}
    for uid, entries in by_uid.items():
        valid = [d for d in entries if d.get("score", 0) != 0]
        if not valid:
            continue
        if len(valid) == 1:
            valid[0]["own_score"] = True
            out[int(uid)] = valid[0]
        else:
            out[int(uid)] = reference_pick(valid)
    return out


def entry(name: str | None, count: int | None, score: float, **extra) -> dict:
    d = {"gpu_specs": {"gpu_name": name, "num_gpus": count}, "score": score}
    d.update({"own_score": True, "allocated": True})
    d.update(extra)
    return d


# --- pick_dominant_dict parity --------------------------------------------------------------


def test_the_most_common_gpu_and_score_wins():
    a, b, c = entry("H100", 8, 80), entry("A100", 4, 40), entry("H100", 8, 80)
    assert pick_dominant_dict([b, a, c]) is a


def test_a_tie_on_votes_goes_to_the_highest_score():
    low, high = entry("A100", 4, 40), entry("H100", 8, 80)
    assert pick_dominant_dict([low, high]) is high
    assert pick_dominant_dict([high, low]) is high


def test_a_tie_on_votes_and_score_goes_to_the_combination_seen_first():
    first, second = entry("A100", 8, 50), entry("H100", 8, 50)
    assert pick_dominant_dict([first, second]) is first
    assert pick_dominant_dict([second, first]) is second


def test_the_first_entry_with_the_winning_combination_is_returned_even_if_others_differ():
    a = entry("H100", 8, 80, hotkey="first", created_at="2025-01-01")
    b = entry("H100", 8, 80, hotkey="second", created_at="2025-06-01")
    chosen = pick_dominant_dict([entry("A100", 1, 5), a, b])
    assert chosen is a and chosen["hotkey"] == "first"


def test_the_winner_is_mutated_in_place_and_the_others_are_not():
    a, b = entry("H100", 8, 80, own_score="x"), entry("A100", 4, 90, own_score="y")
    winner = pick_dominant_dict([a, b])
    assert winner is b and b["own_score"] is True and a["own_score"] == "x"


def test_score_is_part_of_the_vote_so_close_scores_split_it():
    votes = [entry("H100", 8, 80.0), entry("H100", 8, 80.1), entry("A100", 4, 40), entry("A100", 4, 40)]
    assert pick_dominant_dict(votes)["gpu_specs"]["gpu_name"] == "A100"


def test_python_equality_rules_apply_to_the_vote_key_like_the_original():
    # 8 == 8.0 == the same Counter key; a missing gpu_specs falls back to {} (None, None, score).
    assert (
        pick_dominant_dict([entry("H100", 8, 50), entry("A100", 1, 60), entry("H100", 8.0, 50)])["score"]
        == 50
    )
    bare = {"score": 70, "own_score": True, "allocated": True}
    assert pick_dominant_dict([bare, entry("H100", 8, 60)]) is bare


def test_pick_dominant_dict_keeps_the_original_crash_on_null_gpu_specs():
    with pytest.raises(AttributeError):
        pick_dominant_dict([entry("H100", 8, 80), {"gpu_specs": None, "score": 5}])


@pytest.mark.parametrize("seed", range(40))
def test_pick_dominant_dict_matches_the_reference_on_random_votes(seed):
    rng = random.Random(seed)
    names, counts, scores = ["H100", "A100", "4090"], [1, 2, 8], [10, 10.0, 20, 35.5]
    entries = [
        entry(rng.choice(names), rng.choice(counts), rng.choice(scores)) for _ in range(rng.randint(2, 9))
    ]
    mine, theirs = copy.deepcopy(entries), copy.deepcopy(entries)
    got, want = pick_dominant_dict(mine), reference_pick(theirs)
    assert mine.index(got) == theirs.index(want)
    assert mine == theirs  # same mutation


# --- compat_stats_allocated parity -----------------------------------------------------------


def _random_runs(rng: random.Random) -> list[tuple[str, dict]]:
    runs = []
    for v in range(rng.randint(1, 6)):
        stats = {}
        for uid in rng.sample(range(12), rng.randint(0, 12)):
            stats[str(uid)] = {
                "uid": uid,
                "hotkey": HK[uid],
                "gpu_specs": {"gpu_name": rng.choice(["H100", "A100"]), "num_gpus": rng.choice([1, 8])},
                "score": rng.choice([0, 0.0, 12.5, 25, 100]),
                "allocated": rng.choice([True, False, 1, "true"]),
                "own_score": rng.choice([True, True, False, 1]),
            }
        runs.append((HK[v], stats))
    return runs


@pytest.mark.parametrize("seed", range(40))
def test_compat_stats_allocated_matches_the_reference_on_random_networks(seed):
    runs = _random_runs(random.Random(seed))
    mine, theirs = copy.deepcopy(runs), copy.deepcopy(runs)
    got, want = compat_stats_allocated(mine), reference_stats_allocated(theirs)
    assert got == want
    assert list(got) == list(want)  # same key order
    assert mine == theirs  # same mutations


def test_only_own_allocated_positive_entries_vote_and_identity_checks_reject_truthy_values():
    runs = [
        (V1, {"1": entry("H100", 8, 80, own_score=1), "2": entry("H100", 8, 80, allocated="yes")}),
        (V2, {"3": entry("H100", 8, 0), "4": entry("A100", 4, 40)}),
    ]
    assert list(compat_stats_allocated(runs)) == [4]


def test_the_returned_entry_is_the_original_dict_from_one_validator():
    mine = entry("H100", 8, 80, hotkey=HK[5])
    result = compat_stats_allocated([(V1, {"5": mine}), (V2, {"5": entry("A100", 1, 10)})])
    assert result[5] is mine


def test_a_non_integer_uid_key_is_skipped_and_counted_where_the_original_crashes():
    issues = Issues()
    runs = [(V1, {"abc": entry("H100", 8, 80), "7": entry("A100", 4, 40)})]
    with pytest.raises(ValueError):
        reference_stats_allocated(copy.deepcopy(runs))
    assert list(compat_stats_allocated(runs, issues)) == [7]
    assert issues.counts["uid_not_integer"] == 1


def test_null_gpu_specs_with_a_positive_score_in_a_contested_uid_is_skipped_and_counted():
    issues = Issues()
    good = entry("H100", 8, 80)
    runs = [
        (V1, {"3": {"gpu_specs": None, "score": 50, "own_score": True, "allocated": True}}),
        (V2, {"3": good}),
    ]
    with pytest.raises(AttributeError):
        reference_stats_allocated(copy.deepcopy(runs))
    assert compat_stats_allocated(runs, issues)[3] is good
    assert issues.counts["gpu_specs_null"] == 1


def test_a_single_null_gpu_specs_entry_is_kept_as_the_original_keeps_it():
    lone = {"gpu_specs": None, "score": 50, "own_score": True, "allocated": True}
    assert compat_stats_allocated([(V1, {"3": lone})]) == reference_stats_allocated([(V1, {"3": dict(lone)})])


@pytest.mark.parametrize(
    ("stats", "reason"),
    [
        (["not", "a", "dict"], "stats_not_object"),
        ({"1": "junk"}, "stats_entry_not_object"),
        ({"1": {"score": "99", "own_score": True, "allocated": True}}, "score_not_number"),
        ({"1": {"score": None, "own_score": True, "allocated": True}}, "score_not_number"),
        ({"99999": entry("H100", 8, 80)}, "uid_out_of_range"),
        ({"-1": entry("H100", 8, 80)}, "uid_out_of_range"),
    ],
)
def test_wrong_types_in_stats_are_counted_by_reason_and_never_raise(stats, reason):
    issues = Issues()
    good = {"5": entry("H100", 8, 80)}
    result = compat_stats_allocated([(V1, stats), (V2, good)], issues)
    assert list(result) == [5]
    assert issues.counts[reason] >= 1


def test_unhashable_gpu_names_in_a_contested_uid_are_skipped():
    issues = Issues()
    runs = [(V1, {"4": entry(["H100"], 8, 80)}), (V2, {"4": entry("A100", 4, 40)})]
    assert compat_stats_allocated(runs, issues)[4]["gpu_specs"]["gpu_name"] == "A100"
    assert issues.counts["gpu_specs_invalid"] == 1


def test_a_huge_stats_dict_is_cut_at_the_bound():
    issues = Issues()
    stats = {str(uid): entry("H100", 1, 1) for uid in range(views.MAX_STATS_ENTRIES + 50)}
    result = compat_stats_allocated([(V1, stats)], issues)
    assert len(result) == views.MAX_UID + 1
    assert issues.counts["stats_too_many_entries"] == 1


# --- the figures the original cannot show ---------------------------------------------------


def _vrun(hotkey: str, payload: dict, run_id: str | None = None, **kw) -> VerifiedRun:
    return VerifiedRun(run_id or f"run-{hotkey[:3]}", kw.pop("role", "validator"), hotkey, payload, **kw)


def test_stats_view_reports_reporting_agreeing_validators_and_score_spread():
    runs = [
        _vrun(V1, {"stats": {"9": entry("H100", 8, 80, hotkey=HK[9])}}),
        _vrun(V2, {"stats": {"9": entry("H100", 8, 80, hotkey=HK[9])}}),
        _vrun(V3, {"stats": {"9": entry("H100", 4, 40, hotkey=HK[9])}}),
    ]
    view = stats_view(runs)
    assert view[9] == UidStats(9, HK[9], "H100", 8.0, 80.0, reporting=3, agreeing=2, spread=40.0)


def test_stats_view_cleans_labels_from_unicode_junk():
    issues = Issues()
    junk = entry("H100\x00\u202e\ud800" + "x" * 200, 8, 80, hotkey="not-an-ss58")
    view = stats_view([_vrun(V1, {"stats": {"1": junk}})], issues)
    assert view[1].hotkey == "" and view[1].gpu_name.startswith("H100") and len(view[1].gpu_name) <= 64
    view[1].gpu_name.encode("utf-8")  # exposable
    assert issues.counts["label_value_invalid"] == 1 and issues.counts["hotkey_invalid"] == 1


# --- allocation -------------------------------------------------------------------------------


def test_allocations_are_a_deduplicated_union_with_claim_counts():
    runs = [
        _vrun(V1, {"allocated_hotkeys": [HK[5], HK[6], HK[5]]}),
        _vrun(V2, {"allocated_hotkeys": [HK[6]]}),
        _vrun(V3, {}),
    ]
    assert allocated_hotkeys(runs) == {HK[5]: {V1}, HK[6]: {V1, V2}}


def test_allocated_hotkeys_that_are_no_longer_registered_are_flagged_not_dropped():
    runs = [_vrun(V1, {"allocated_hotkeys": [HK[5], HK[6]]})]
    view = allocation_view(runs, registered={HK[5]: 5})
    assert dict(view.claims) == {HK[5]: 1, HK[6]: 1}
    assert view.unregistered == {HK[6]}
    assert allocation_view(runs, registered=None).unregistered == frozenset()


def test_bad_allocation_lists_are_counted_and_skipped():
    issues = Issues()
    runs = [
        _vrun(V1, {"allocated_hotkeys": "5Fnotalist"}, run_id="a"),
        _vrun(V2, {"allocated_hotkeys": [None, 7, {"x": 1}, "short", HK[7]]}, run_id="b"),
    ]
    assert allocated_hotkeys(runs, issues) == {HK[7]: {V2}}
    assert issues.counts == {"allocated_hotkeys_not_list": 1, "hotkey_invalid": 4}
    assert issues.by_run["b"]["hotkey_invalid"] == 4


# --- penalties --------------------------------------------------------------------------------


def test_penalties_accept_plain_strings_and_dicts_with_bounded_status_codes():
    issues = Issues()
    runs = [
        _vrun(V1, {"penalized_hotkeys": [HK[3]]}),
        _vrun(
            V2,
            {
                "penalized_hotkeys_checklist": [
                    {"hotkey": HK[4], "status_code": "PORT_CLOSED", "description": "x"},
                    {"hotkey": HK[3], "status_code": "made up \u2603"},
                    {"hotkey": HK[5]},
                    {"status_code": "PORT_CLOSED"},
                    42,
                ]
            },
        ),
    ]
    assert penalized_hotkeys(runs, issues) == {HK[3]: {"", "other"}, HK[4]: {"PORT_CLOSED"}, HK[5]: {""}}
    assert issues.counts["penalized_entry_invalid"] == 2


def test_an_unhashable_penalty_status_code_is_other_instead_of_failing_the_refresh():
    # JSON lets a status code be a list or an object; a set lookup on it raises TypeError, which
    # would fail every validator refresh for as long as that run exists.
    runs = [
        _vrun(
            V1,
            {
                "penalized_hotkeys_checklist": [
                    {"hotkey": HK[3], "status_code": ["PORT_CLOSED"]},
                    {"hotkey": HK[4], "status_code": {"code": "PORT_CLOSED"}},
                    {"hotkey": HK[5], "status_code": "SSH_ACCESS_DISABLED"},
                ]
            },
        )
    ]
    assert penalized_hotkeys(runs, Issues()) == {
        HK[3]: {"other"},
        HK[4]: {"other"},
        HK[5]: {"SSH_ACCESS_DISABLED"},
    }


# --- specs and claims -------------------------------------------------------------------------


def _specs(name: str, count: int) -> dict:
    return {"gpu": {"count": count, "details": [{"name": name, "capacity": 80000}] * count}}


def test_specs_are_keyed_by_uid_and_hotkey_not_by_enumeration():
    runs = [
        _vrun(HK[10], {"specs": _specs("H100", 8)}, role="miner"),
        _vrun(HK[11], {"specs": _specs("A100", 2)}, role="miner"),
        _vrun(HK[12], {"specs": _specs("A100", 2)}, role="miner"),  # not registered
    ]
    got = specs_view(runs, {HK[10]: 201, HK[11]: 7})
    assert got == [MinerSpec(7, HK[11], "A100", 2.0), MinerSpec(201, HK[10], "H100", 8.0)]


def test_duplicate_runs_per_hotkey_keep_the_newest_and_count_the_other():
    issues = Issues()
    old = _vrun(HK[10], {"specs": _specs("A100", 1)}, run_id="old", role="miner", timestamp=100.0)
    new = _vrun(HK[10], {"specs": _specs("H100", 8)}, run_id="new", role="miner", timestamp=200.0)
    for order in itertools.permutations([old, new]):
        issues = Issues()
        assert specs_view(list(order), {HK[10]: 3}, issues) == [MinerSpec(3, HK[10], "H100", 8.0)]
        assert dict(issues.by_run) == {"old": {"duplicate_run": 1}}


@pytest.mark.parametrize(
    ("specs", "reason"),
    [
        ("", "specs_missing"),
        ({}, "specs_missing"),
        ({"cpu": {}}, "specs_missing"),
        ([1, 2], "specs_not_object"),
        ({"gpu": "8x H100"}, "specs_not_object"),
        ({"gpu": {"count": "8", "details": []}}, "gpu_count_invalid"),
        ({"gpu": {"count": True}}, "gpu_count_invalid"),
        ({"gpu": {"count": 10**9}}, "gpu_count_invalid"),
        ({"gpu": {"count": 1, "details": [None]}}, "specs_not_object"),
        ({"gpu": {"count": 1, "details": [{"name": 5}]}}, "specs_not_object"),
    ],
)
def test_malformed_specs_are_counted_and_skipped(specs, reason):
    issues = Issues()
    assert specs_view([_vrun(HK[10], {"specs": specs}, role="miner")], {HK[10]: 1}, issues) == []
    assert issues.counts == {reason: 1}


def test_a_miner_without_gpus_is_reported_with_zero_gpus():
    got = specs_view(
        [_vrun(HK[10], {"specs": {"gpu": {"count": 0, "details": []}}}, role="miner")], {HK[10]: 1}
    )
    assert got == [MinerSpec(1, HK[10], "", 0.0)]


def test_claims_that_disagree_with_proof_of_gpu_are_flagged_per_field():
    stats = {
        1: UidStats(1, HK[1], "NVIDIA H100 80GB HBM3", 8.0, 80, 1, 1, 0),
        2: UidStats(2, HK[2], "NVIDIA A100", 4.0, 40, 1, 1, 0),
        3: UidStats(3, HK[9], "NVIDIA A100", 4.0, 40, 1, 1, 0),  # uid now held by another hotkey
    }
    specs = [
        MinerSpec(1, HK[1], "nvidia  h100 80gb hbm3", 8.0),
        MinerSpec(2, HK[2], "NVIDIA H200", 8.0),
        MinerSpec(3, HK[3], "NVIDIA H200", 8.0),
        MinerSpec(4, HK[4], "NVIDIA H200", 8.0),  # no PoG entry
    ]
    assert claim_mismatches(specs, stats) == {
        (1, HK[1], "gpu_name"): False,
        (1, HK[1], "gpu_count"): False,
        (2, HK[2], "gpu_name"): True,
        (2, HK[2], "gpu_count"): True,
    }
