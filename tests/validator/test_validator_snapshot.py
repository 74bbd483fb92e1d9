"""The ComputeDb snapshot: original schema, fixed query budget, aggregates, timestamps, scores."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from validator_helpers import HOTKEYS, NOW, execute

from exporters.validator.models import MODELS
from exporters.validator.parsing import parse_timestamp
from exporters.validator.records import StatsRecord, normalized_score
from exporters.validator.schema import TABLES
from exporters.validator.simulate import create_compute_db, sqlite_timestamp
from exporters.validator.snapshot import SnapshotReader

# The original ComputeDb columns (name, declared type, NOT NULL, default, pk) per table, v1.9.0.
ORIGINAL_COLUMNS = {
    "miner": [("uid", "INTEGER", 0, None, 1), ("ss58_address", "TEXT", 0, None, 0)],
    "miner_details": [
        ("id", "INTEGER", 0, None, 1),
        ("hotkey", "TEXT", 0, None, 0),
        ("details", "TEXT", 0, None, 0),
        ("no_specs_count", "INTEGER", 0, "0", 0),
    ],
    "tb": [("id", "INTEGER", 0, None, 1), ("hotkey", "TEXT", 0, None, 0), ("details", "TEXT", 0, None, 0)],
    "challenge_details": [
        ("uid", "INTEGER", 0, None, 0),
        ("ss58_address", "TEXT", 0, None, 0),
        ("success", "BOOLEAN", 0, None, 0),
        ("elapsed_time", "REAL", 0, None, 0),
        ("difficulty", "INTEGER", 0, None, 0),
        ("created_at", "TIMESTAMP", 0, None, 0),
    ],
    "blacklist": [
        ("id", "INTEGER", 0, None, 1),
        ("hotkey", "TEXT", 0, None, 0),
        ("details", "TEXT", 0, None, 0),
    ],
    "allocation": [
        ("id", "INTEGER", 0, None, 1),
        ("hotkey", "TEXT", 0, None, 0),
        ("details", "TEXT", 0, None, 0),
    ],
    "wandb_runs": [("hotkey", "TEXT", 0, None, 1), ("run_id", "TEXT", 1, None, 0)],
    "pog_stats": [
        ("id", "INTEGER", 0, None, 1),
        ("hotkey", "TEXT", 0, None, 0),
        ("gpu_name", "TEXT", 0, None, 0),
        ("num_gpus", "INTEGER", 0, None, 0),
        ("created_at", "TIMESTAMP", 0, "CURRENT_TIMESTAMP", 0),
    ],
    "stats": [
        ("uid", "INTEGER", 0, None, 1),
        ("hotkey", "TEXT", 1, None, 0),
        ("gpu_specs", "TEXT", 0, None, 0),
        ("score", "REAL", 0, None, 0),
        ("allocated", "BOOLEAN", 0, None, 0),
        ("own_score", "BOOLEAN", 0, None, 0),
        ("reliability_score", "REAL", 0, None, 0),
        ("created_at", "TIMESTAMP", 0, "CURRENT_TIMESTAMP", 0),
    ],
}


def _columns(path: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return [(r[1], r[2], r[3], r[4], r[5]) for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_simulated_db_has_exactly_the_original_schema(sim_db):
    conn = sqlite3.connect(sim_db.path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    indexes = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND sql IS NOT NULL")
    }
    autoinc = conn.execute("SELECT sql FROM sqlite_master WHERE name='pog_stats'").fetchone()[0]
    conn.close()
    assert tables == set(ORIGINAL_COLUMNS) | {"sqlite_sequence"}
    assert indexes == {"idx_uid", "idx_ss58_address"}
    assert "AUTOINCREMENT" in autoinc
    for table, columns in ORIGINAL_COLUMNS.items():
        assert _columns(sim_db.path, table) == columns, table


def test_peewee_models_declare_the_original_columns_and_types():
    for model in MODELS:
        expected = {name: ctype for name, ctype, *_ in ORIGINAL_COLUMNS[model._meta.table_name]}
        declared = {f.column_name: f.field_type for f in model._meta.sorted_fields}
        assert declared == expected, model._meta.table_name


def test_simulated_data_is_realistic(tmp_path):
    db = create_compute_db(tmp_path / "database.db", seed=5, now=NOW)
    conn = sqlite3.connect(db.path)
    assert conn.execute("SELECT COUNT(*) FROM miner").fetchone()[0] == 256
    failed = conn.execute(
        "SELECT COUNT(*) FROM pog_stats WHERE gpu_name IS NULL AND num_gpus IS NULL"
    ).fetchone()
    inflated = conn.execute("SELECT COUNT(*) FROM stats WHERE own_score = 0 AND score > 100").fetchone()[0]
    per_hotkey = conn.execute(
        "SELECT MAX(n) FROM (SELECT COUNT(*) n FROM pog_stats GROUP BY hotkey)"
    ).fetchone()
    hotkey = conn.execute("SELECT ss58_address FROM miner WHERE uid = 0").fetchone()[0]
    conn.close()
    assert failed[0] > 0
    assert inflated > 0
    assert per_hotkey[0] <= 4  # the validator keeps the newest 4 rows per hotkey
    assert hotkey == "5HYntZzaUZoZG4NdeZcAwt7wH3TfGZzWp6xp9sy2rP3nHbic"  # //miner0, sr25519, ss58 format 42
    assert len(db.allocated) > 0 and len(db.penalized) > 0


def _statements(path: Path) -> tuple[list[str], SnapshotReader]:
    seen: list[str] = []
    reader = SnapshotReader(path, trace=seen.append, local_tz=UTC)
    reader.read()
    return seen, reader


def test_query_count_does_not_grow_with_the_number_of_uids(tmp_path):
    small = create_compute_db(
        tmp_path / "small.db", miners=8, pog_rows=40, challenge_rows=40, seed=1, now=NOW
    )
    large = create_compute_db(
        tmp_path / "large.db", miners=256, pog_rows=3000, challenge_rows=3000, seed=1, now=NOW
    )
    small_sql, _ = _statements(small.path)
    large_sql, _ = _statements(large.path)
    # BEGIN/COMMIT, 5 small tables, 2 big tables x (signature + aggregate)
    assert len(small_sql) == len(large_sql) == 2 + 5 + 2 * 2
    assert small_sql[0] == "BEGIN" and small_sql[-1] == "COMMIT"
    assert not any("WHERE" in s.upper() and "?" in s for s in large_sql)  # nothing parameterised per uid


def test_unchanged_big_tables_are_not_aggregated_again(sim_db):
    seen: list[str] = []
    reader = SnapshotReader(sim_db.path, trace=seen.append, local_tz=UTC)
    first = reader.read()
    seen.clear()
    second = reader.read()
    assert not any("GROUP BY" in s for s in seen)
    assert second.pog == first.pog and second.challenges == first.challenges


def test_an_insert_or_a_delete_triggers_a_fresh_aggregate(sim_db):
    reader = SnapshotReader(sim_db.path, local_tz=UTC)
    hotkey = sim_db.hotkeys[sorted(sim_db.queryable)[0]]
    before = reader.read().pog[hotkey].rows
    execute(
        sim_db.path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, NULL, NULL)", (hotkey,)
    )
    assert reader.read().pog[hotkey].rows == before + 1
    execute(
        sim_db.path,
        "DELETE FROM pog_stats WHERE id = (SELECT MIN(id) FROM pog_stats WHERE hotkey = ?)",
        (hotkey,),
    )
    assert reader.read().pog[hotkey].rows == before


def test_a_cached_aggregate_expires_after_its_maximum_age(sim_db):
    clock = [0.0]
    seen: list[str] = []
    reader = SnapshotReader(sim_db.path, trace=seen.append, aggregate_max_age=300, monotonic=lambda: clock[0])
    reader.read()
    clock[0] = 299.0
    seen.clear()
    reader.read()
    assert sum("GROUP BY" in s for s in seen) == 0
    clock[0] = 301.0
    seen.clear()
    reader.read()
    assert sum("GROUP BY" in s for s in seen) == 2


def test_pog_summary_uses_the_newest_row_and_the_newest_success(empty_db):
    path = empty_db()
    hk = HOTKEYS[1]
    t0 = datetime(2025, 6, 13, 9, 0, 0, tzinfo=UTC)
    rows = [
        (hk, "NVIDIA A100-SXM4-80GB", 4, sqlite_timestamp(t0)),
        (hk, "NVIDIA H100 80GB HBM3", 8, sqlite_timestamp(t0 + timedelta(hours=1))),
        (hk, None, None, sqlite_timestamp(t0 + timedelta(hours=2))),  # failed PoG: NULLs
        # Same second as the failure; id order decides (created_at ties at 1 s resolution).
        (hk, None, None, sqlite_timestamp(t0 + timedelta(hours=2))),
    ]
    execute(path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)", rows)
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (1, ?)", (hk,))
    snap = SnapshotReader(path).read()
    summary = snap.pog[hk]
    assert summary.rows == 4
    assert summary.gpu is not None and summary.gpu.gpu_name == "NVIDIA H100 80GB HBM3"
    assert summary.gpu.num_gpus == 8
    assert summary.last_timestamp == (t0 + timedelta(hours=2)).timestamp()
    assert summary.last_success_timestamp == (t0 + timedelta(hours=1)).timestamp()


def test_sqlite_current_timestamp_is_read_as_utc():
    assert parse_timestamp("2025-06-13 12:00:00", UTC) == NOW.timestamp()


def test_local_isoformat_timestamps_use_the_validator_time_zone():
    berlin_summer = timezone(timedelta(hours=2))
    assert parse_timestamp("2025-06-13T14:00:00", berlin_summer) == NOW.timestamp()
    assert parse_timestamp("2025-06-13T14:00:00.250000", berlin_summer) == NOW.timestamp() + 0.25
    # An explicit offset or Z wins over the assumed zone.
    assert parse_timestamp("2025-06-13T12:00:00Z", berlin_summer) == NOW.timestamp()
    assert parse_timestamp("2025-06-13T13:00:00+01:00", berlin_summer) == NOW.timestamp()


@pytest.mark.parametrize("bad", ["", "yesterday", "2025-13-40 99:00:00", True, 12, None, b"x"])
def test_garbage_timestamps_raise_value_error(bad):
    with pytest.raises((ValueError, TypeError)):
        parse_timestamp(bad, UTC)


def _stats(score: float | None, own: bool) -> StatsRecord:
    return StatsRecord(0, HOTKEYS[0], None, score, False, own, 0.0, None)


@pytest.mark.parametrize(
    ("score", "own", "expected"),
    [
        (66.0, True, (66.0, False)),
        (100.0, False, (100.0, False)),  # exactly 100 is a valid copied score
        (6600.0, False, (66.0, True)),  # the v1.9.0 x100 bug
        (250.0, True, (250.0, False)),  # a local score is never divided
        (None, False, (None, False)),
    ],
)
def test_scores_are_reported_on_the_published_scale(score, own, expected):
    assert normalized_score(_stats(score, own)) == expected


def test_reader_rejects_unknown_table_names(tmp_path):
    with pytest.raises(ValueError, match="unknown"):
        SnapshotReader(tmp_path / "x.db", tables=[*TABLES, "hotkeys_hw_change"])


def test_queryable_needs_current_stats_and_pog_evidence(empty_db):
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(u, HOTKEYS[u]) for u in range(4)])
    stats = [
        (0, HOTKEYS[0], None, 0.0, 0, 1),  # PoG rows exist below: queryable
        (1, HOTKEYS[1], '{"gpu_name": "NVIDIA H200", "num_gpus": 1}', 50.0, 0, 0),  # specs copied: queryable
        (2, HOTKEYS[2], None, 0.0, 0, 1),  # non-queryable: no PoG rows, NULL specs
        # A stale row left by the uid's previous owner:
        (3, HOTKEYS[5], '{"gpu_name": "NVIDIA H200", "num_gpus": 1}', 50.0, 0, 1),
    ]
    execute(
        path,
        "INSERT INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score) VALUES (?,?,?,?,?,?)",
        stats,
    )
    execute(path, "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, NULL, NULL)", (HOTKEYS[0],))
    assert SnapshotReader(path).read().queryable_uids() == {0, 1}
