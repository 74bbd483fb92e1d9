"""The demo's miner finds its allocation in the trusted validators' signed runs, as the network view does."""

from __future__ import annotations

import urllib.request

import pytest
from helpers.stack import poll
from prometheus_client.parser import text_string_to_metric_families

from exporters.demo.orchestrator import Demo

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[str, list]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_the_demo_miner_reports_the_allocation_its_trusted_validators_published(demo: Demo) -> None:
    assert demo.subnet is not None
    miner_url, network_url = demo.urls["miner exporter"], demo.urls["network exporter"]
    ours = demo.subnet.our_miner_hotkey

    def allocated(fams: dict[str, list]) -> bool:
        return [s.value for s in fams.get("opencompute_miner_allocated", [])] == [1.0]

    fams = poll(lambda: scrape(miner_url), allocated, timeout=20)
    assert allocated(fams), {k: v for k, v in fams.items() if "allocat" in k}
    assert [s.labels for s in fams["opencompute_miner_allocation_info"]] == [
        {"validator_hotkey": demo.subnet.our_allocator}
    ]
    assert [s.value for s in fams["opencompute_miner_allocation_refresh_success"]] == [1.0]
    claims = fams["opencompute_miner_allocation_claims"][0].value

    def network_sees_us(fams: dict[str, list]) -> bool:
        samples = fams.get("opencompute_network_miner_allocated", [])
        return any(s.labels.get("hotkey") == ours for s in samples)

    network = poll(lambda: scrape(network_url), network_sees_us, timeout=20)
    network_claims = [
        s.value for s in network["opencompute_network_miner_allocation_claims"] if s.labels["hotkey"] == ours
    ]
    assert network_claims == [claims], "the miner and the network exporter must apply the same rule"
