"""Golden /metrics of the validator exporter on a deterministic ComputeDb, checked by promtool."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.golden import assert_matches_golden
from helpers.promtool import assert_promtool_clean, check_metrics
from prometheus_client import CollectorRegistry, generate_latest
from validator_helpers import NOW, Scraper, execute

from exporters.core.collector import ScrapeCollector
from exporters.validator.simulate import create_compute_db

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "validator.prom"
CONTRACT = ROOT / "docs" / "metrics-contract.md"


def _render(tmp_path: Path) -> str:
    db = create_compute_db(tmp_path / "database.db", miners=12, challenge_rows=30, seed=7, now=NOW)
    # Cases the seed may not produce, made explicit: a copied x100-inflated score (uid 3), a
    # non-queryable miner (uid 4: no PoG rows, NULL specs), a failed newest PoG run (uid 2), and
    # a row with broken JSON, as a validator with a bad write would leave it (uid 5).
    execute(db.path, "UPDATE stats SET own_score = 0, score = 4125.0 WHERE uid = 3")
    execute(db.path, "DELETE FROM pog_stats WHERE hotkey = (SELECT ss58_address FROM miner WHERE uid = 4)")
    execute(db.path, "UPDATE stats SET gpu_specs = NULL, score = 0 WHERE uid = 4")
    execute(
        db.path,
        "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at)"
        " SELECT ss58_address, NULL, NULL, '2025-06-13 11:58:00' FROM miner WHERE uid = 2",
    )
    execute(db.path, "UPDATE stats SET gpu_specs = '{\"gpu_name\": ' WHERE uid = 5")
    scraper = Scraper(db.path, "--no-collector.validator")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector(scraper.parts.exporter.collectors, clock=lambda: 0.0))
    return generate_latest(registry).decode()


def test_metrics_match_the_golden_file(tmp_path):
    assert_matches_golden(_render(tmp_path), GOLDEN)


def test_golden_file_passes_promtool_check_metrics():
    assert_promtool_clean(GOLDEN)


def test_promtool_catches_a_broken_exposition():
    broken = GOLDEN.read_bytes().replace(
        b"opencompute_validator_db_up 1.0", b"opencompute_validator_db_up one"
    )
    assert check_metrics(broken).returncode == 1


def test_every_validator_metric_is_in_the_contract():
    contract = set(re.findall(r"opencompute_[a-z_]+", CONTRACT.read_text()))
    names = set(re.findall(r"^# TYPE (opencompute_\w+) ", GOLDEN.read_text(), flags=re.M))
    assert names - contract == set()
    validator_names = {n for n in contract if n.startswith("opencompute_validator_")}
    assert validator_names - names == set()  # the golden DB exercises every validator metric


def test_golden_output_has_bounded_label_values():
    text = GOLDEN.read_text()
    uids = {int(u) for u in re.findall(r'uid="(\d+)"', text)}
    assert uids and max(uids) < 12
    reasons = set(re.findall(r'reason="(\w+)"', text))
    assert reasons == {"missing", "locked", "corrupt", "schema", "error"}
