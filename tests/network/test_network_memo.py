"""Reusing per-run results across refreshes must never change what a refresh computes."""

from __future__ import annotations

import copy
import math

from network_helpers import key

from exporters.core.signing import sign_v1
from exporters.core.state.base import RunRecord
from exporters.subnet.reading import V1Memo
from exporters.subnet.views import StatsMemo

ENTRY = {"gpu_specs": {"gpu_name": "H100", "num_gpus": 8}, "score": 80, "own_score": True, "allocated": True}


def test_equal_stats_in_a_new_object_reuse_the_reading():
    memo = StatsMemo()
    first = memo.read("r1", {"1": dict(ENTRY)})
    again = memo.read("r1", copy.deepcopy({"1": dict(ENTRY)}))
    assert again is first and (memo.hits, memo.misses) == (1, 1)


def test_true_and_1_or_1_and_1_0_are_different_stats():
    memo = StatsMemo()
    assert len(memo.read("r1", {"1": dict(ENTRY)})[0]) == 1
    assert memo.read("r1", {"1": {**ENTRY, "own_score": 1}})[0] == []  # == says equal; bytes do not
    pairs, _ = memo.read("r1", {"1": {**ENTRY, "score": 80.0}})
    assert pairs[0][1]["score"] == 80.0 and isinstance(pairs[0][1]["score"], float)


def test_nan_scores_are_never_taken_for_a_cached_null():
    memo = StatsMemo()
    assert memo.read("r1", {"1": {**ENTRY, "score": None}}) == ([], ["score_not_number"])  # None > 0 raises
    pairs, notes = memo.read("r1", {"1": {**ENTRY, "score": math.nan}})
    assert pairs == [] and notes == ["score_not_finite"]


def test_a_different_key_order_is_read_again():
    memo = StatsMemo()
    memo.read("r1", {"1": dict(ENTRY), "2": "junk"})
    pairs, _ = memo.read("r1", {"2": "junk", "1": dict(ENTRY)})  # the junk entry now stops the run first
    assert pairs == []


def test_v1_verdicts_follow_the_run_id_hotkey_and_signature():
    kp = key("//memo")
    good = RunRecord(
        "abcd1234", "validator-x", {"hotkey": kp.ss58_address, "signature": sign_v1(kp, "abcd1234")}
    )
    moved = RunRecord("zzzz9999", "validator-x", dict(good.config))  # same signature, another run id
    memo = V1Memo()
    assert memo.verified(good) and memo.verified(good) and memo.checks == 1
    assert not memo.verified(moved) and memo.checks == 2
    memo.retain([moved])
    assert list(memo.verdicts) == [("zzzz9999", kp.ss58_address, good.config["signature"])]
