"""Bad input never crashes the validator exporter: it reports a bounded reason and keeps serving."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest
from validator_helpers import HOTKEYS, execute, sample

from exporters.validator.payload import build_validator_payload
from exporters.validator.schema import DbReadError
from exporters.validator.snapshot import SnapshotReader

UP = "opencompute_validator_db_up"
ERRORS = "opencompute_validator_db_errors_total"
SUCCESS = "opencompute_scrape_collector_success"


def _file_digest(path: Path) -> tuple[float, str]:
    return path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_database_reports_missing_and_the_exporter_keeps_serving(tmp_path, scraper_for, caplog):
    path = tmp_path / "database.db"
    scraper = scraper_for(path)
    server = scraper.parts.exporter.server("127.0.0.1", 0)
    server.start()
    try:
        with caplog.at_level(logging.WARNING):
            body = (
                urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10).read().decode()
            )
        assert "opencompute_validator_db_up 0.0" in body
        assert 'opencompute_validator_db_errors_total{reason="missing"} 1.0' in body
        assert 'opencompute_scrape_collector_success{collector="db"} 1.0' in body
        assert 'opencompute_scrape_collector_success{collector="pog"} 0.0' in body
        assert "reason=missing" in caplog.text
        assert not path.exists()  # opening read-only never creates the file
    finally:
        server.shutdown()


def test_the_exporter_recovers_when_the_database_appears(tmp_path, scraper_for, sim_db):
    path = tmp_path / "later.db"
    scraper = scraper_for(path)
    assert sample(scraper.scrape(), UP) == 0.0
    shutil.copy(sim_db.path, path)
    samples = scraper.scrape()
    assert sample(samples, UP) == 1.0
    assert sample(samples, ERRORS, reason="missing") == 1.0  # the counter keeps the history
    assert sample(samples, "opencompute_validator_miners", state="known") == 16.0


def test_an_exclusive_lock_held_by_the_validator_reports_locked_quickly(sim_db, scraper_for):
    scraper = scraper_for(sim_db.path, "--validator.db-busy-timeout=200ms")
    writer = sqlite3.connect(sim_db.path, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES ('x', NULL, NULL)")
    try:
        started = time.monotonic()
        samples = scraper.scrape()
        elapsed = time.monotonic() - started
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="locked") == 1.0
    assert sample(samples, SUCCESS, collector="pog") == 0.0
    assert sample(samples, SUCCESS, collector="challenges") == 0.0
    assert elapsed < 2.0  # one busy timeout, not one per table
    assert sample(scraper.scrape(), UP) == 1.0


def test_a_scrape_holds_no_lock_once_it_is_done(sim_db, scraper_for):
    scraper = scraper_for(sim_db.path)
    scraper.scrape()
    writer = sqlite3.connect(sim_db.path, timeout=0, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # would raise "database is locked" if a reader lingered
    writer.execute("ROLLBACK")
    writer.close()


def test_garbage_bytes_report_corrupt(tmp_path, scraper_for):
    path = tmp_path / "database.db"
    path.write_bytes(b"this is not sqlite at all\x00\xff" * 512)
    samples = scraper_for(path).scrape()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="corrupt") == 1.0
    assert sample(samples, "opencompute_validator_miner_info", uid="0", hotkey=HOTKEYS[0]) is None


def test_a_damaged_page_reports_corrupt(sim_db, scraper_for):
    data = bytearray(sim_db.path.read_bytes())
    page = 4096
    for offset in range(page, len(data), page):
        data[offset : offset + 64] = b"\xa5" * 64  # clobber every b-tree page header after the first
    sim_db.path.write_bytes(bytes(data))
    samples = scraper_for(sim_db.path).scrape()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="corrupt") == 1.0


def test_a_missing_table_fails_only_the_collector_that_reads_it(sim_db, scraper_for):
    execute(sim_db.path, "DROP TABLE challenge_details")
    samples = scraper_for(sim_db.path).scrape()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="schema") == 1.0
    assert sample(samples, SUCCESS, collector="challenges") == 0.0
    assert sample(samples, SUCCESS, collector="db") == 1.0
    assert sample(samples, SUCCESS, collector="pog") == 1.0
    assert sample(samples, "opencompute_validator_miners", state="known") == 16.0


def test_disabling_the_collector_of_a_missing_table_brings_the_database_back_up(sim_db, scraper_for):
    execute(sim_db.path, "DROP TABLE challenge_details")
    samples = scraper_for(sim_db.path, "--no-collector.challenges").scrape()
    assert sample(samples, UP) == 1.0
    assert sample(samples, ERRORS, reason="schema") == 0.0


def test_a_schema_from_another_version_missing_a_column_reports_schema(empty_db, scraper_for):
    path = empty_db()
    execute(path, "DROP TABLE stats")
    execute(path, "CREATE TABLE stats (uid INTEGER PRIMARY KEY, hotkey TEXT NOT NULL, score REAL)")
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (0, ?)", (HOTKEYS[0],))
    samples = scraper_for(path).scrape()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="schema") == 1.0
    assert sample(samples, "opencompute_validator_miner_info", uid="0", hotkey=HOTKEYS[0]) == 1.0
    assert sample(samples, "opencompute_validator_miner_score", uid="0") is None


def test_failed_pog_rows_with_nulls_give_a_timestamp_but_no_gpu(empty_db, scraper_for):
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(0, HOTKEYS[0]), (1, HOTKEYS[1])])
    execute(
        path,
        "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)",
        [
            (HOTKEYS[0], None, None, "2025-06-13 10:00:00"),
            (HOTKEYS[0], None, None, "2025-06-13 11:00:00"),
            (HOTKEYS[1], "NVIDIA H200", 2, "2025-06-13 11:30:00"),
        ],
    )
    samples = scraper_for(path).scrape()
    assert sample(samples, "opencompute_validator_pog_history_rows", uid="0") == 2.0
    assert sample(samples, "opencompute_validator_pog_last_timestamp_seconds", uid="0") == 1749812400.0
    assert sample(samples, "opencompute_validator_pog_last_success_timestamp_seconds", uid="0") is None
    assert sample(samples, "opencompute_validator_pog_gpus", uid="0") is None
    assert sample(samples, "opencompute_validator_pog_gpu_info", uid="1", gpu_name="NVIDIA H200") == 1.0
    assert sample(samples, "opencompute_validator_pog_gpus", uid="1") == 2.0


def test_invalid_gpu_specs_json_in_one_row_does_not_hide_the_other_uids(empty_db, scraper_for):
    path = empty_db()
    rows = [
        (0, HOTKEYS[0], '{"gpu_name": "NVIDIA H200", "num_gpus": 2}', 50.0, 1, 1),
        (1, HOTKEYS[1], "{not json", 25.0, 0, 1),
        (2, HOTKEYS[2], '["NVIDIA H200", 2]', 25.0, 0, 1),  # valid JSON, wrong shape
        (3, HOTKEYS[3], None, 0.0, 0, 1),
    ]
    execute(
        path,
        "INSERT INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score) VALUES (?,?,?,?,?,?)",
        rows,
    )
    samples = scraper_for(path).scrape()
    for uid, score in ((0, 50.0), (1, 25.0), (2, 25.0), (3, 0.0)):
        assert sample(samples, "opencompute_validator_miner_score", uid=str(uid)) == score
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="stats", column="gpu_specs") == 2.0
    )
    assert sample(samples, UP) == 1.0
    payload = build_validator_payload(SnapshotReader(path).read())
    assert payload["stats"]["1"]["gpu_specs"] is None
    assert payload["stats"]["0"]["gpu_specs"] == {"gpu_name": "NVIDIA H200", "num_gpus": 2}


def test_bad_details_json_counts_as_no_specs(empty_db, scraper_for):
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(u, HOTKEYS[u]) for u in range(5)])
    specs = json.dumps({"cpu": {"count": 32}, "gpu": {"count": 1}})
    execute(
        path,
        "INSERT INTO miner_details (hotkey, details, no_specs_count) VALUES (?, ?, ?)",
        [
            (HOTKEYS[0], specs, 0),  # fine
            (HOTKEYS[1], "{}", 5),  # reset after five empty answers
            (HOTKEYS[2], "{broken", 0),  # invalid JSON
            (HOTKEYS[3], specs, 2),  # missed two rounds
        ],  # HOTKEYS[4] has no row at all
    )
    samples = scraper_for(path).scrape()
    assert sample(samples, "opencompute_validator_miners", state="no_specs") == 4.0
    assert sample(samples, "opencompute_validator_miners", state="known") == 5.0
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="miner_details", column="details")
        == 1.0
    )


def test_wrongly_typed_values_are_counted_not_raised(empty_db, scraper_for):
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(0, HOTKEYS[0]), (1, None)])
    execute(
        path,
        "INSERT INTO stats (uid, hotkey, score, allocated, own_score, created_at) VALUES (?,?,?,?,?,?)",
        (0, HOTKEYS[0], "lots", "maybe", 1, "not a time"),
    )
    execute(
        path,
        "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)",
        (HOTKEYS[0], "NVIDIA H200", "eight", "garbage"),
    )
    samples = scraper_for(path).scrape()
    assert sample(samples, UP) == 1.0
    assert sample(samples, "opencompute_validator_miner_info", uid="0", hotkey=HOTKEYS[0]) == 1.0
    assert sample(samples, "opencompute_validator_miner_score", uid="0") is None
    assert sample(samples, "opencompute_validator_db_invalid_values", table="stats", column="score") == 1.0
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="stats", column="allocated") == 1.0
    )
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="miner", column="ss58_address")
        == 1.0
    )
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="pog_stats", column="num_gpus")
        == 1.0
    )
    assert (
        sample(samples, "opencompute_validator_db_invalid_values", table="pog_stats", column="created_at")
        == 1.0
    )
    assert sample(samples, "opencompute_validator_pog_history_rows", uid="0") == 1.0


def test_out_of_range_uids_never_become_label_values(empty_db, scraper_for):
    path = empty_db()
    execute(
        path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(-1, HOTKEYS[0]), (10**9, HOTKEYS[1])]
    )
    samples = scraper_for(path).scrape()
    assert not [k for k in samples if k[0] == "opencompute_validator_miner_info"]
    assert sample(samples, "opencompute_validator_db_invalid_values", table="miner", column="uid") == 2.0


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_the_exporter_never_writes_the_database(tmp_path, scraper_for, journal_mode):
    from exporters.validator.simulate import create_compute_db

    db = create_compute_db(
        tmp_path / "database.db", miners=16, challenge_rows=20, seed=2, journal_mode=journal_mode
    )
    before = _file_digest(db.path)
    scraper = scraper_for(db.path)
    for _ in range(5):
        assert sample(scraper.scrape(), UP) == 1.0
    assert _file_digest(db.path) == before
    assert not Path(f"{db.path}-journal").exists()


def test_a_payload_is_refused_when_its_tables_could_not_be_read(tmp_path, sim_db):
    with pytest.raises(DbReadError, match="missing"):
        build_validator_payload(SnapshotReader(tmp_path / "nope.db").read())
    execute(sim_db.path, "DROP TABLE blacklist")
    with pytest.raises(DbReadError, match="schema"):
        build_validator_payload(SnapshotReader(sim_db.path).read())


def test_a_stale_stats_row_of_a_reregistered_uid_gives_one_series_per_uid(empty_db, scraper_for):
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (0, ?)", (HOTKEYS[0],))
    # uid 0 was re-registered: stats still holds the previous owner's hotkey, both have PoG rows.
    execute(
        path,
        "INSERT INTO stats (uid, hotkey, score, allocated, own_score) VALUES (0, ?, 10.0, 0, 1)",
        (HOTKEYS[7],),
    )
    execute(
        path,
        "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, ?, ?)",
        [(HOTKEYS[0], "NVIDIA H200", 1), (HOTKEYS[7], "NVIDIA B200", 8)],
    )
    samples = scraper_for(path).scrape()
    assert sample(samples, SUCCESS, collector="pog") == 1.0
    gpu_series = [k for k in samples if k[0] == "opencompute_validator_pog_gpu_info"]
    assert gpu_series == [("opencompute_validator_pog_gpu_info", (("gpu_name", "NVIDIA H200"), ("uid", "0")))]
    assert sample(samples, "opencompute_validator_miner_info", uid="0", hotkey=HOTKEYS[0]) == 1.0
    assert sample(samples, "opencompute_validator_miners", state="queryable") == 0.0  # stats row is stale


def test_an_unexpected_parser_failure_fails_only_its_table_with_reason_error(
    sim_db, scraper_for, monkeypatch
):
    from exporters.validator import snapshot

    def broken(*_args, **_kwargs):
        raise RuntimeError("unexpected value shape")

    monkeypatch.setattr(snapshot, "fetch_details", broken)
    samples = scraper_for(sim_db.path).scrape()
    assert sample(samples, UP) == 0.0
    assert sample(samples, ERRORS, reason="error") == 1.0
    assert sample(samples, "opencompute_validator_miners", state="no_specs") is None
    assert sample(samples, "opencompute_validator_miners", state="known") == 16.0
    assert sample(samples, SUCCESS, collector="pog") == 1.0
