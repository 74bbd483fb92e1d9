"""The validator exporter's PoG GPU is the row the original's ``get_pog_specs`` returns.

``get_pog_specs`` (neurons/Validator/database/pog.py, v1.9.0) selects
``gpu_name, num_gpus FROM pog_stats WHERE hotkey = ? AND gpu_name IS NOT NULL AND num_gpus IS
NOT NULL ORDER BY created_at DESC LIMIT 1``. Rows written in the same second tie on
``created_at`` (``CURRENT_TIMESTAMP``, 1 s); the query is run here on the same file, so the
comparison holds for whatever SQLite returns, through the full and the incremental aggregate.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta

from validator_helpers import HOTKEYS, execute

from exporters.validator.simulate import sqlite_timestamp
from exporters.validator.snapshot import SnapshotReader

T0 = datetime(2025, 6, 13, 9, 0, 0, tzinfo=UTC)
KEYS = [HOTKEYS[uid] for uid in range(6)]
MODELS = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB", "NVIDIA B200"]


def get_pog_specs(path, hotkey: str) -> tuple[str, int] | None:
    """The original query, on the original connection type."""
    conn = sqlite3.connect(path)
    try:
        row = conn.execute(
            "SELECT gpu_name, num_gpus FROM pog_stats WHERE hotkey = ? AND gpu_name IS NOT NULL "
            "AND num_gpus IS NOT NULL ORDER BY created_at DESC LIMIT 1",
            (hotkey,),
        ).fetchone()
    finally:
        conn.close()
    return (row[0], row[1]) if row else None


def ours(snap, hotkey: str) -> tuple[str, int] | None:
    summary = snap.pog.get(hotkey)
    if summary is None or summary.gpu is None:
        return None
    return summary.gpu.gpu_name, summary.gpu.num_gpus


def test_of_two_successes_in_the_same_second_the_oldest_row_wins_as_in_get_pog_specs(empty_db):
    path = empty_db()
    hk = HOTKEYS[1]
    same = sqlite_timestamp(T0)
    rows = [(hk, "NVIDIA A100-SXM4-80GB", 4, same), (hk, "NVIDIA H100 80GB HBM3", 8, same)]
    execute(path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)", rows)
    snap = SnapshotReader(path).read()
    assert ours(snap, hk) == get_pog_specs(path, hk) == ("NVIDIA A100-SXM4-80GB", 4)


def test_a_later_created_at_wins_even_when_its_row_id_is_lower(empty_db):
    path = empty_db()
    hk = HOTKEYS[2]
    rows = [
        (hk, "NVIDIA B200", 8, sqlite_timestamp(T0 + timedelta(hours=1))),
        (hk, "NVIDIA A100-SXM4-80GB", 2, sqlite_timestamp(T0)),  # inserted later, older stamp
    ]
    execute(path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)", rows)
    assert ours(SnapshotReader(path).read(), hk) == get_pog_specs(path, hk) == ("NVIDIA B200", 8)


def _rows(rng: random.Random, n: int, base: int) -> list[tuple]:
    out = []
    for i in range(n):
        hk = rng.choice(KEYS)
        stamp = sqlite_timestamp(T0 + timedelta(seconds=rng.choice([0, 0, 1, 2, 60]) + base + i // 3))
        if rng.random() < 0.25:
            out.append((hk, None, None, stamp))  # a failed PoG round
        else:
            out.append((hk, rng.choice(MODELS), rng.choice([1, 2, 4, 8]), stamp))
    return out


def test_the_full_and_the_incremental_aggregate_agree_with_get_pog_specs_on_random_ties(empty_db):
    rng = random.Random(16)
    for case in range(12):
        path = empty_db(f"pog{case}.db")
        insert = "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)"
        execute(path, insert, _rows(rng, 30, 0))
        reader = SnapshotReader(path, aggregate_max_age=3600)
        snap = reader.read()
        for hk in KEYS:
            assert ours(snap, hk) == get_pog_specs(path, hk), (case, hk, "full")
        execute(path, insert, _rows(rng, 20, rng.choice([0, 1, 100])))  # appended: incremental path
        snap = reader.read()
        for hk in KEYS:
            assert ours(snap, hk) == get_pog_specs(path, hk), (case, hk, "incremental")
