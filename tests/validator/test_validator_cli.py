"""``opencompute-exporter validator``: flags, collector toggles, and the real process end to end."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from datetime import UTC
from pathlib import Path

import pytest
from helpers.exporter_process import running_exporter
from validator_helpers import Scraper, names, resolve

from exporters.core.config import ConfigError
from exporters.validator import cli

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_original_and_the_port_registry():
    values = resolve()
    assert values["web_listen_address"] == ("0.0.0.0", 9928)
    assert values["validator_db_path"] == "database.db"  # SQLITE_DB_PATH's default in the original
    assert values["validator_db_busy_timeout"] == 0.5
    assert values["validator_publish_interval"] == 1200.0  # 20 minutes, the sync_scores cadence
    assert values["validator_local_timezone"] is None  # this host's zone
    assert all(values[f"collector_{name}"] for name in ("db", "pog", "challenges", "validator"))


def test_every_flag_is_mirrored_by_an_environment_variable():
    values = resolve(
        environ={
            "OPENCOMPUTE_VALIDATOR_DB_PATH": "/var/lib/sn27/database.db",
            "OPENCOMPUTE_VALIDATOR_PUBLISH_INTERVAL": "5m",
            "OPENCOMPUTE_VALIDATOR_LOCAL_TIMEZONE": "UTC",
            "OPENCOMPUTE_COLLECTOR_CHALLENGES": "false",
        }
    )
    assert values["validator_db_path"] == "/var/lib/sn27/database.db"
    assert values["validator_publish_interval"] == 300.0
    assert values["validator_local_timezone"].utcoffset(None) == UTC.utcoffset(None)
    assert values["collector_challenges"] is False


def test_bad_values_are_reported_together():
    with pytest.raises(ConfigError) as err:
        resolve("--validator.db-busy-timeout=-1s", "--validator.local-timezone=Mars/Olympus")
    assert len(err.value.problems) == 2


def test_disabled_collectors_skip_their_tables(sim_db):
    seen: list[str] = []
    scraper = Scraper(
        sim_db.path, "--no-collector.challenges", "--no-collector.pog", "--no-collector.db", trace=seen.append
    )
    samples = scraper.scrape()
    assert "opencompute_validator_db_up" not in names(samples)
    assert not seen  # only the validator (identity) collector is on: no database read at all
    assert "opencompute_publish_enabled" in names(samples)

    seen.clear()
    samples = Scraper(sim_db.path, "--no-collector.challenges", trace=seen.append).scrape()
    assert not any("challenge_details" in s for s in seen)
    assert "opencompute_validator_challenges" not in names(samples)


def test_one_scrape_reads_the_database_once(sim_db):
    seen: list[str] = []
    scraper = Scraper(sim_db.path, trace=seen.append)
    scraper.scrape()
    assert seen.count("BEGIN") == 1
    assert scraper.parts.source.reads == 1


def test_help_does_not_import_wandb_or_bittensor():
    code = (
        "import sys; from exporters.validator import cli; cli.flags(); "
        "bad = [m for m in ('wandb', 'bittensor', 'bittensor_core') if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_exporter_process_serves_and_stops_cleanly_on_sigterm(sim_db):
    flags = (f"--validator.db-path={sim_db.path}", "--validator.local-timezone=UTC")
    with running_exporter("validator", *flags) as exporter:
        body = urllib.request.urlopen(exporter.url("/metrics"), timeout=10).read().decode()
        assert "opencompute_validator_db_up 1.0" in body
        assert 'opencompute_exporter_build_info{exporter="validator"' in body
        assert exporter.stop() == 0, exporter.log


def test_collector_table_map_covers_every_snapshot_table():
    from exporters.validator.schema import TABLES

    used = {t for tables in cli.COLLECTOR_TABLES.values() for t in tables} | set(cli.PUBLISH_TABLES)
    assert used == set(TABLES)
