"""End to end: a counter's first event shows on the dashboards (XID, ECC, publish failures, ...).

A real Prometheus scrapes a stand-in exporter whose counters exist from the first scrape with
value 1, which is how the exporters expose a first XID or a first failed publish. ``increase()``
needs two samples of a change and gives 0 there (checked below, so this test can fail); every
counter panel must show the 1. Bounded: ~15 s.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers.promservers import SampleServer, Servers
from helpers.stack import PrometheusAPI, poll

from dashboards import queries
from dashboards.queries import grafana_to_promql
from exporters.demo import promstack

pytestmark = pytest.mark.integration

COUNTERS = {
    "opencompute_gpu_xid_errors_total": {"gpu": "0", "uuid": "GPU-0", "xid": "79"},
    "opencompute_gpu_ecc_errors_total": {"gpu": "0", "uuid": "GPU-0", "type": "uncorrected"},
    "opencompute_gpu_nvml_errors_total": {"reason": "timeout"},
    "opencompute_publish_attempts_total": {},
    "opencompute_publish_failures_total": {"reason": "unavailable"},
    "opencompute_validator_db_errors_total": {"reason": "locked"},
    "opencompute_network_run_rejections_total": {"role": "miner", "reason": "tampered"},
    "opencompute_network_bad_input_total": {"reason": "hotkey_invalid"},
}


def _counter_panels() -> dict[str, str]:
    """Query constants that count events of one of COUNTERS."""
    return {
        name: expr
        for name, expr in queries.all_queries().items()
        if any(counter in expr for counter in COUNTERS) and not name.startswith("VAR_")
    }


def test_a_counter_that_appears_at_1_shows_its_first_event_on_every_counter_panel(tmp_path: Path) -> None:
    panels = _counter_panels()
    assert len(panels) >= 8, sorted(panels)
    exporter = SampleServer()
    servers = Servers(tmp_path)
    try:
        for name, labels in COUNTERS.items():
            exporter.set(name, 1, **labels)
        url = servers.start_prometheus(
            "prometheus",
            promstack.prometheus_config({"opencompute-miner": exporter.address}, scrape_interval=1),
        )
        api = PrometheusAPI(url)
        scraped = poll(lambda: api.query("count_over_time(up[1m]) >= 3"), bool, timeout=20)
        assert scraped, "Prometheus did not scrape the stand-in exporter three times"
        at = time.time()

        for counter in COUNTERS:
            old = api.query(f"sum(increase({counter}[1m]))", at=at)
            assert [float(r["value"][1]) for r in old] == [0.0], f"increase() should miss it: {old}"
        missing = []
        for name, expr in panels.items():
            values = [float(r["value"][1]) for r in api.query(grafana_to_promql(expr), at=at)]
            if not values or max(values) < 1:
                missing.append(f"{name}: {values} <- {grafana_to_promql(expr)}")
        assert not missing, "panels that hide a counter's first event:\n" + "\n".join(missing)
    finally:
        servers.stop()
        exporter.close()
