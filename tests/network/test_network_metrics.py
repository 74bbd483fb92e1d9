"""The network exporter's /metrics: golden file, promtool lint, HELP, HTTP, and stale serving."""

from __future__ import annotations

import argparse
import re
import urllib.request
from pathlib import Path

import pytest
from helpers.clock import Clock
from helpers.golden import assert_matches_golden
from helpers.promtool import assert_promtool_clean
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.network import cli
from exporters.network.simulate import MemoryStateStore, seed_network

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "network.prom"

LIVE_FAMILIES = {  # describe the refresher or the process, not cached run data
    "opencompute_exporter_build_info",
    "opencompute_exporter_loop_restarts",
    "opencompute_exporter_loop_up",
    "opencompute_exporter_loop_last_success_timestamp_seconds",
    "opencompute_scrape_collector_success",
    "opencompute_scrape_collector_duration_seconds",
    "opencompute_network_last_refresh_timestamp_seconds",
    "opencompute_network_refresh_duration_seconds",
    "opencompute_network_refresh_success",
    "opencompute_network_refresh_failures",
    "opencompute_state_store_info",
    "opencompute_network_our_hotkey_info",
    "opencompute_state_store_requests",
}


def values_for(tmp_path: Path, *argv: str) -> dict:
    flagset = cli.flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args(["--network.state-dir", str(tmp_path), *argv]), environ={})


def build(tmp_path: Path, clock: Clock, store: MemoryStateStore | None = None):
    store = store or MemoryStateStore(clock=clock)
    net = seed_network(store, validators=4, miners=16, seed=7, clock=clock)
    # Validator 0 publishes the penalty checklist: make it the authority, as the demo does.
    authority = f"--network.penalty-authority={net.validator_hotkeys[0]}"
    parts = cli.build_exporter(values_for(tmp_path, authority), store=store, source=net.source())
    parts.refresher.clock = clock
    parts.refresher.timer = lambda: 0.0
    return parts, store, net


def render(registry) -> str:
    text = generate_latest(registry).decode()
    text = re.sub(r"(opencompute_scrape_collector_duration_seconds\{[^}]*\}) \S+", r"\1 0.0", text)
    return re.sub(r'pythonversion="[^"]*"', 'pythonversion="X"', text)


@pytest.fixture
def refreshed(tmp_path):
    clock = Clock()
    parts, store, net = build(tmp_path, clock)
    assert parts.refresher.refresh("validator") and parts.refresher.refresh("miner")
    return parts, store, net, clock


def test_metrics_match_the_golden_file(refreshed):
    assert_matches_golden(render(refreshed[0].exporter.registry), GOLDEN)


def test_golden_file_passes_promtool_check_metrics():
    assert_promtool_clean(GOLDEN)


def test_every_family_of_cached_data_says_so_in_its_help(refreshed):
    families = list(text_string_to_metric_families(render(refreshed[0].exporter.registry)))
    assert len(families) > 25
    for family in families:
        if family.name in LIVE_FAMILIES:
            continue
        assert "Cached" in family.documentation, family.name


def test_the_simulated_adversaries_show_up_in_the_metrics(refreshed):
    parts, _, net, _ = refreshed
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(render(parts.exporter.registry))
        for s in f.samples
    }
    assert samples[("opencompute_network_runs_rejected", (("reason", "tampered"), ("role", "miner")))] == 1
    assert samples[("opencompute_network_runs", (("role", "miner"), ("signature", "v1_only")))] == 1
    assert samples[("opencompute_network_validator_trusted", (("hotkey", net.low_stake_validator),))] == 0
    assert samples[("opencompute_network_trust_source_info", (("source", "chain"),))] == 1
    assert samples[("opencompute_network_miners_penalized", ())] == len(net.penalized)
    enforced = {dict(k[1])["hotkey"] for k in samples if k[0] == "opencompute_network_miner_penalty_enforced"}
    assert enforced == net.penalized  # validator 0's checklist holds every simulated penalty
    assert samples[("opencompute_network_penalty_authority_seen", ())] == 1
    mismatched = [
        k for k, v in samples.items() if k[0] == "opencompute_network_miner_claim_mismatch" and v == 1
    ]
    assert mismatched and all(dict(k[1])["hotkey"] in net.overclaiming for k in mismatched)


def test_when_the_store_goes_away_scrapes_serve_the_last_snapshot_with_success_zero(refreshed):
    parts, store, _, clock = refreshed
    before = render(parts.exporter.registry)
    store.fail = True
    clock.advance(900)
    assert not parts.refresher.refresh("validator")
    after = render(parts.exporter.registry)
    assert 'opencompute_network_refresh_success{role="validator"} 0.0' in after
    stamp = 'opencompute_network_last_refresh_timestamp_seconds{role="validator"} 1.75e+09'
    assert stamp in before and stamp in after  # unchanged, so time() - it keeps growing
    assert 'opencompute_network_refresh_failures_total{reason="unavailable",role="validator"} 1.0' in after

    def data(text: str) -> list[str]:
        return [line for line in text.splitlines() if "stats_" in line or "allocat" in line]

    assert data(before) == data(after)


def test_collectors_can_be_switched_off(tmp_path):
    clock = Clock()
    store = MemoryStateStore(clock=clock)
    net = seed_network(store, seed=1, clock=clock)
    values = values_for(tmp_path, "--no-collector.specs", "--no-collector.stats")
    parts = cli.build_exporter(values, store=store, source=net.source())
    parts.refresher.refresh("validator")
    text = render(parts.exporter.registry)
    assert "opencompute_network_stats_score" not in text and "miner_spec_info" not in text
    assert "opencompute_network_miner_allocated" in text


def test_metrics_are_served_over_http(refreshed):
    parts = refreshed[0]
    server = parts.exporter.server("127.0.0.1", 0)
    server.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
    finally:
        server.shutdown()
    assert 'opencompute_scrape_collector_success{collector="stats"} 1.0' in body
    assert "opencompute_network_stats_agreeing_validators" in body
