"""Incremental aggregation of pog_stats and challenge_details: appends are merged, the rest recomputed.

The reference is always a full recomputation: a fresh :class:`SnapshotReader` (no cache) over the
same file. The property test drives a real SQLite file in the original schema through a fixed-seed
random sequence of the validator's writes (appends, update_pog_stats's keep-newest-4, purges,
rowid reuse, VACUUM) and bad values, and compares after every step.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sqlite3
from collections import Counter
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from validator_helpers import HOTKEYS, NOW, execute

from exporters.validator.records import Snapshot
from exporters.validator.simulate import create_compute_db, sqlite_timestamp
from exporters.validator.snapshot import SnapshotReader

BIG = ("pog_stats", "challenge_details")
POG_INSERT = "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)"


def _merging_reader(path: Path, **kwargs: Any) -> SnapshotReader:
    """A caching reader whose aggregates never age out: only a non-append forces a full one."""
    return SnapshotReader(path, local_tz=UTC, aggregate_max_age=math.inf, **kwargs)


def _add_challenges(path: Path, rows: list[tuple]) -> None:
    """Append ``(uid, success, elapsed_time, created_at)`` rows to challenge_details."""
    execute(
        path,
        "INSERT INTO challenge_details (uid, success, elapsed_time, created_at) VALUES (?, ?, ?, ?)",
        rows,
    )


def _full(path: Path) -> Snapshot:
    """A full recomputation: a reader with no cache."""
    return SnapshotReader(path, local_tz=UTC).read()


def _assert_same(incremental: Snapshot, full: Snapshot, context: str = "") -> None:
    assert incremental.up and full.up, context
    assert incremental.pog == full.pog, context
    assert incremental.invalid == full.invalid, context
    assert incremental.queryable_uids() == full.queryable_uids(), context
    assert incremental.challenges.keys() == full.challenges.keys(), context
    for uid, got in incremental.challenges.items():
        want = full.challenges[uid]
        # A merged average is sum / count in floats; SQLite's AVG may round the last bit differently.
        assert replace(got, elapsed_avg_seconds=None) == replace(want, elapsed_avg_seconds=None), context
        if want.elapsed_avg_seconds is None:
            assert got.elapsed_avg_seconds is None, context
        else:
            assert got.elapsed_avg_seconds is not None, context
            assert math.isclose(got.elapsed_avg_seconds, want.elapsed_avg_seconds, rel_tol=1e-12), context


def _modes(reader: SnapshotReader, before: Counter) -> dict[str, str]:
    """table -> how the last read brought its aggregate up to date."""
    diff = reader.refreshes - before
    out = {}
    for (table, mode), n in diff.items():
        assert n == 1
        out[table] = mode
    return out


def _pog_row(hk: str, gpu: str | None, n: int | None, minutes: int) -> tuple:
    return (hk, gpu, n, sqlite_timestamp(NOW + timedelta(minutes=minutes)))


def test_appended_rows_are_merged_by_primary_key_range_without_a_full_aggregate(sim_db):
    seen: list[str] = []
    reader = _merging_reader(sim_db.path, trace=seen.append)
    reader.read()
    high = sqlite3.connect(sim_db.path).execute("SELECT MAX(id) FROM pog_stats").fetchone()[0]
    hk = HOTKEYS[0]
    execute(sim_db.path, POG_INSERT, [_pog_row(hk, "NVIDIA B200", 8, 1), _pog_row(hk, None, None, 2)])
    execute(
        sim_db.path,
        "INSERT INTO challenge_details (uid, success, elapsed_time, created_at) VALUES (0, 1, 2.0, ?)",
        ("2025-06-13T13:00:00",),
    )
    seen.clear()
    before = Counter(reader.refreshes)
    snap = reader.read()
    assert _modes(reader, before) == {"pog_stats": "incremental", "challenge_details": "incremental"}
    aggregates = [s for s in seen if "GROUP BY" in s]
    assert len(aggregates) == 2
    assert f'"id" > {high}' in aggregates[0]
    assert '"rowid" > ' in aggregates[1]
    summary = snap.pog[hk]
    assert summary.gpu is not None and summary.gpu.gpu_name == "NVIDIA B200" and summary.gpu.num_gpus == 8
    assert summary.last_timestamp == (NOW + timedelta(minutes=2)).timestamp()
    assert summary.last_success_timestamp == (NOW + timedelta(minutes=1)).timestamp()
    assert snap.challenges[0].last_timestamp == (NOW + timedelta(hours=1)).timestamp()
    _assert_same(snap, _full(sim_db.path))


def test_merged_counts_and_average_are_those_of_all_rows(empty_db):
    path = empty_db()
    _add_challenges(path, [(3, 1, 1.0, "2025-06-13T10:00:00"), (3, 0, 2.0, "2025-06-13T11:00:00")])
    reader = _merging_reader(path)
    assert reader.read().challenges[3].elapsed_avg_seconds == 1.5
    _add_challenges(path, [(3, 1, 3.0, "2025-06-13T09:00:00"), (3, 1, 6.0, None), (3, None, None, None)])
    before = Counter(reader.refreshes)
    summary = reader.read().challenges[3]
    assert _modes(reader, before)["challenge_details"] == "incremental"
    assert (summary.successes, summary.failures) == (3, 2)
    assert summary.elapsed_avg_seconds == 3.0  # (1 + 2 + 3 + 6) / 4, not a mean of means
    assert summary.last_timestamp == NOW.timestamp() - 3600  # 11:00 stays the newest


def test_update_pog_stats_keeping_the_newest_four_falls_back_to_a_full_aggregate(sim_db):
    reader = _merging_reader(sim_db.path)
    reader.read()
    hk = sim_db.hotkeys[sorted(sim_db.queryable)[0]]
    # The original's update_pog_stats: insert, then keep the newest 4 rows of the hotkey.
    for minute in range(1, 6):
        execute(sim_db.path, POG_INSERT, _pog_row(hk, "NVIDIA H200", 2, minute))
    execute(
        sim_db.path,
        "DELETE FROM pog_stats WHERE hotkey = ? AND id NOT IN"
        " (SELECT id FROM pog_stats WHERE hotkey = ? ORDER BY id DESC LIMIT 4)",
        (hk, hk),
    )
    before = Counter(reader.refreshes)
    snap = reader.read()
    assert _modes(reader, before)["pog_stats"] == "full"
    assert snap.pog[hk].rows == 4
    _assert_same(snap, _full(sim_db.path))


def test_a_reused_highest_rowid_in_challenge_details_is_not_mistaken_for_an_append(empty_db):
    path = empty_db()
    _add_challenges(path, [(1, 1, 1.0, "2025-06-13T10:00:00"), (2, 1, 1.0, "2025-06-13T10:00:00")])
    reader = _merging_reader(path)
    reader.read()
    # No AUTOINCREMENT: after deleting the newest row SQLite hands its rowid out again, so the
    # count grows by exactly the rows past the old highest rowid although a row was deleted.
    execute(path, "DELETE FROM challenge_details WHERE rowid = (SELECT MAX(rowid) FROM challenge_details)")
    _add_challenges(path, [(1, 0, 5.0, "2025-06-13T11:00:00"), (1, 0, 5.0, "2025-06-13T12:00:00")])
    before = Counter(reader.refreshes)
    snap = reader.read()
    assert _modes(reader, before)["challenge_details"] == "full"
    assert 2 not in snap.challenges
    assert (snap.challenges[1].successes, snap.challenges[1].failures) == (1, 2)
    _assert_same(snap, _full(path))


def test_another_file_at_the_path_is_aggregated_in_full(tmp_path):
    first = create_compute_db(tmp_path / "a.db", miners=8, pog_rows=40, challenge_rows=40, seed=1, now=NOW)
    other = create_compute_db(tmp_path / "b.db", miners=8, pog_rows=60, challenge_rows=60, seed=2, now=NOW)
    reader = _merging_reader(first.path)
    reader.read()
    staged = tmp_path / "staged.db"
    shutil.copy(other.path, staged)
    os.replace(staged, first.path)  # a restored backup: a new inode at the same path
    before = Counter(reader.refreshes)
    snap = reader.read()
    assert _modes(reader, before) == {"pog_stats": "full", "challenge_details": "full"}
    _assert_same(snap, _full(first.path))


def test_a_merge_leaves_snapshots_already_handed_out_unchanged(sim_db):
    reader = _merging_reader(sim_db.path)
    hk = sim_db.hotkeys[sorted(sim_db.queryable)[0]]
    first = reader.read()
    rows = first.pog[hk].rows
    execute(sim_db.path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, NULL, NULL)", (hk,))
    second = reader.read()
    assert second.pog[hk].rows == rows + 1
    assert first.pog[hk].rows == rows


def test_appends_are_still_recomputed_in_full_once_the_aggregate_reaches_its_maximum_age(sim_db):
    clock = [0.0]
    reader = SnapshotReader(sim_db.path, local_tz=UTC, aggregate_max_age=300, monotonic=lambda: clock[0])
    reader.read()
    modes = []
    for step in range(1, 5):
        clock[0] = step * 100.0
        execute(sim_db.path, "INSERT INTO pog_stats (hotkey) VALUES (?)", (HOTKEYS[1],))
        before = Counter(reader.refreshes)
        reader.read()
        modes.append(_modes(reader, before)["pog_stats"])
    # Merges do not reset the age: the last full run was at 0 s, so 400 s triggers one.
    assert modes == ["incremental", "incremental", "incremental", "full"]


# --------------------------------------------------------------------------- property test

POG_HOTKEYS = [*HOTKEYS.values(), None, f"  {HOTKEYS[2]}  ", "", 42, b"\x01blob"]
GPU_NAMES = ["NVIDIA H200", "NVIDIA B200", None, None, "", "  "]
GPU_COUNTS = [1, 2, 8, None, None, "x", -1, 2.5]
CHALLENGE_UIDS = [*range(8), None, 5000, "abc", 2.0]
SUCCESS = [0, 1, 1, None, "true", "1"]


def _pog_values(rng: random.Random, minute: int) -> tuple:
    created = rng.choice(
        [sqlite_timestamp(NOW + timedelta(minutes=minute))] * 6 + [None, "yesterday", 1749812400]
    )
    return (rng.choice(POG_HOTKEYS), rng.choice(GPU_NAMES), rng.choice(GPU_COUNTS), created)


def _challenge_values(rng: random.Random, minute: int) -> tuple:
    elapsed = rng.choice([rng.uniform(0.1, 30.0)] * 6 + [None, "abc", 7, 1e300])
    created = rng.choice(
        [(NOW + timedelta(minutes=rng.randint(-600, minute))).replace(tzinfo=None).isoformat()] * 6
        + [None, "garbage", 1749812400.5, b"\x00blob"]
    )
    return (rng.choice(CHALLENGE_UIDS), f"hk{rng.randint(0, 9)}", rng.choice(SUCCESS), elapsed, 8, created)


CHALLENGE_INSERT = (
    "INSERT INTO challenge_details (uid, ss58_address, success, elapsed_time, difficulty, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _step(conn: sqlite3.Connection, rng: random.Random, minute: int) -> tuple[str, set[str], set[str]]:
    """One random write: (name, tables only appended to, tables with a row deleted or rewritten)."""
    op = rng.choice(
        ["append_pog", "append_challenges", "append_both", "append_both", "keep_newest_4", "purge",
         "delete_oldest", "append_and_delete_some", "reuse_newest_rowid", "vacuum", "nothing"]
    )  # fmt: skip
    n = rng.randint(1, 12)
    appended: set[str] = set()
    deleted: set[str] = set()
    with conn:
        if op in ("append_pog", "append_both"):
            conn.executemany(POG_INSERT, [_pog_values(rng, minute) for _ in range(n)])
            appended.add("pog_stats")
        if op in ("append_challenges", "append_both"):
            conn.executemany(CHALLENGE_INSERT, [_challenge_values(rng, minute) for _ in range(n)])
            appended.add("challenge_details")
        if op == "keep_newest_4":
            hk = rng.choice(list(HOTKEYS.values()))
            conn.execute(
                POG_INSERT, (hk, "NVIDIA H200", 4, sqlite_timestamp(NOW + timedelta(minutes=minute)))
            )
            cur = conn.execute(
                "DELETE FROM pog_stats WHERE hotkey = ? AND id NOT IN"
                " (SELECT id FROM pog_stats WHERE hotkey = ? ORDER BY id DESC LIMIT 4)",
                (hk, hk),
            )
            (deleted if cur.rowcount else appended).add("pog_stats")
        if op == "purge":  # purge_miner_entries on deregistration
            uid = rng.randrange(8)
            if conn.execute("DELETE FROM pog_stats WHERE hotkey = ?", (HOTKEYS[uid],)).rowcount:
                deleted.add("pog_stats")
            if conn.execute("DELETE FROM challenge_details WHERE uid = ?", (uid,)).rowcount:
                deleted.add("challenge_details")
        if op == "delete_oldest":
            table, key = rng.choice([("pog_stats", "id"), ("challenge_details", "rowid")])
            cur = conn.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} ORDER BY {key} LIMIT ?)", (n,)
            )
            if cur.rowcount:
                deleted.add(table)
        if op == "append_and_delete_some":
            # Fewer deleted than appended, none the oldest or the newest: only the count of the
            # rows past the watermark tells this from an append.
            table, key, insert, values = rng.choice(
                [
                    ("pog_stats", "id", POG_INSERT, _pog_values),
                    ("challenge_details", "rowid", CHALLENGE_INSERT, _challenge_values),
                ]
            )
            conn.executemany(insert, [values(rng, minute) for _ in range(n + 1)])
            keys = [k for (k,) in conn.execute(f"SELECT {key} FROM {table} ORDER BY {key}")][1:-1]
            doomed = rng.sample(keys, min(len(keys), rng.randint(1, n)))
            conn.executemany(f"DELETE FROM {table} WHERE {key} = ?", [(k,) for k in doomed])
            (deleted if doomed else appended).add(table)
        if op == "reuse_newest_rowid":
            k = rng.randint(1, 3)
            cur = conn.execute(
                "DELETE FROM challenge_details WHERE rowid IN"
                " (SELECT rowid FROM challenge_details ORDER BY rowid DESC LIMIT ?)",
                (k,),
            )
            conn.executemany(CHALLENGE_INSERT, [_challenge_values(rng, minute) for _ in range(k + n)])
            (deleted if cur.rowcount else appended).add("challenge_details")
    if op == "vacuum":
        conn.execute("VACUUM")  # rewrites in place: may renumber challenge_details rowids
    return op, appended, deleted


def test_incremental_aggregates_equal_a_full_recomputation_after_random_appends_and_deletes(tmp_path):
    db = create_compute_db(
        tmp_path / "database.db", miners=8, pog_rows=60, challenge_rows=60, seed=4, now=NOW
    )
    rng = random.Random(20250613)
    reader = _merging_reader(db.path)
    _assert_same(reader.read(), _full(db.path), "initial")
    conn = sqlite3.connect(db.path)
    used: Counter[str] = Counter()
    rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in BIG}
    try:
        for step in range(150):
            op, appended, deleted = _step(conn, rng, step)
            before = Counter(reader.refreshes)
            snap = reader.read()
            modes = _modes(reader, before)
            context = f"step {step}: {op}, modes {modes}"
            _assert_same(snap, _full(db.path), context)
            for table in BIG:
                used[modes[table]] += 1
                if table in deleted:
                    assert modes[table] == "full", context
                elif table in appended:
                    # Appending to an empty table has no watermark to extend.
                    assert modes[table] == ("incremental" if rows[table] else "full"), context
                elif op != "vacuum":  # VACUUM may renumber challenge_details rowids: either is right
                    assert modes[table] == "cached", context
            rows = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in BIG}
    finally:
        conn.close()
    # The sequence really exercised every path.
    assert used["incremental"] >= 40 and used["full"] >= 20 and used["cached"] >= 40, used
