"""Scraping while another process writes the ComputeDb, the way the validator does."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from validator_helpers import sample

from exporters.validator.simulate import create_compute_db

# A stand-in for the validator's writes: its own process, the original's default 5 s timeout,
# bursts of pog_stats inserts (update_pog_stats) each committed, as fast as it can, until the
# stop file appears (or the time limit passes).
WRITER = textwrap.dedent(
    """
    import os, sqlite3, sys, time
    path, seconds, hotkey, stop = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    end = time.monotonic() + seconds
    written = 0
    while time.monotonic() < end and not os.path.exists(stop):
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(25):
            conn.execute(
                "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, 'NVIDIA H200', 8)", (hotkey,)
            )
        conn.execute("COMMIT")
        written += 25
        if written == 25:
            print("ready", flush=True)
    print(written, flush=True)
    """
)

_SAMPLE = re.compile(r"^(\w+)(\{[^}]*\})? (\S+)$")


def _parse(body: str) -> dict[str, float]:
    out = {}
    for line in body.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_scrapes_succeed_or_report_locked_while_another_process_writes(tmp_path, scraper_for, journal_mode):
    db = create_compute_db(tmp_path / "database.db", miners=32, seed=3, journal_mode=journal_mode)
    scraper = scraper_for(db.path, "--validator.db-busy-timeout=50ms")
    server = scraper.parts.exporter.server("127.0.0.1", 0)
    server.start()
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db.path), "10.0", db.hotkeys[0], str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        ok = locked = 0
        last_locked = 0.0
        rows_seen = []
        # Scrape for 1.5 s, longer (up to 5 s) while fewer than 6 scrapes got through: in rollback
        # journal mode a writer that never pauses locks most scrapes out, and a shared CI host
        # can make 1.5 s hold only a handful of them.
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < 1.5 or (ok <= 5 and elapsed < 5.0):
            scraper.parts.source.invalidate()
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as resp:
                assert resp.status == 200
                metrics = _parse(resp.read().decode())
            for reason in ("missing", "corrupt", "schema", "error"):
                assert metrics[f'opencompute_validator_db_errors_total{{reason="{reason}"}}'] == 0.0
            now_locked = metrics['opencompute_validator_db_errors_total{reason="locked"}']
            if metrics["opencompute_validator_db_up"] == 1.0:
                ok += 1
                assert now_locked == last_locked
                assert metrics['opencompute_scrape_collector_success{collector="pog"}'] == 1.0
                assert metrics['opencompute_validator_miners{state="known"}'] == 32.0
                rows_seen.append(metrics['opencompute_validator_pog_history_rows{uid="0"}'])
            else:
                locked += 1
                assert now_locked == last_locked + 1
            last_locked = now_locked
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=30)
        server.shutdown()
    assert writer.returncode == 0
    assert int(out.split()[-1]) > 25  # the writer was not starved by the scrapes
    assert ok > 5
    assert rows_seen == sorted(rows_seen) and rows_seen[-1] > rows_seen[0]  # the writes are seen, in order
    # The appends were merged incrementally, and the merged count is the table's.
    assert scraper.parts.source.reader.refreshes[("pog_stats", "incremental")] > 0
    conn = sqlite3.connect(db.path)
    try:
        held = conn.execute("SELECT COUNT(*) FROM pog_stats WHERE hotkey = ?", (db.hotkeys[0],)).fetchone()[0]
    finally:
        conn.close()
    assert sample(scraper.scrape(), "opencompute_validator_pog_history_rows", uid="0") == held
    print(f"{journal_mode}: {ok} scrapes ok, {locked} locked")
