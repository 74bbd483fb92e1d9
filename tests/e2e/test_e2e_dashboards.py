"""Every dashboard panel query (and template variable) returns data from a real Prometheus scraping the demo.

Grafana variables are replaced the way ``dashboards.queries.grafana_to_promql`` documents
(``$__rate_interval`` -> ``1m``, ``$job``/``$instance``/``$hotkey``... -> ``.+``). A panel that
stays empty in the demo is either a query bug or a gap in the demo's simulation; both are
reported together, with the dashboard and panel title. Panels that cannot have data in a demo
are listed in ``KNOWN_GAPS`` with the reason.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.stack import PrometheusAPI

from dashboards.queries import grafana_to_promql, variable_query_to_promql
from exporters.demo.orchestrator import JOBS, Demo, repo_root

pytestmark = pytest.mark.integration

# Panels that cannot have data in the demo, with the reason (reported to the maintainers). A
# gap that starts returning data fails the test too, so this list cannot go stale silently.
KNOWN_GAPS: dict[str, str] = {
    # The demo's validator exporter runs as //validator, deliberately not registered on the
    # simulated subnet (its run is rejected as untrusted), so the chain has nothing for it.
    "This validator: blocks since weights were set": "the demo's validator hotkey is not registered",
    "This validator: validator trust and dividends": "the demo's validator hotkey is not registered",
    "This validator: emission per epoch (alpha)": "the demo's validator hotkey is not registered",
}
WARMUP_TIMEOUT = 25.0  # first scrape ~5.5 s after start, then a few 1 s scrapes for rate()
DATA_TIMEOUT = 30.0


def _panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows nest their panels


def panel_queries(convert: Callable[[str], str] = grafana_to_promql) -> list[tuple[str, str, str]]:
    """(dashboard title, panel title, PromQL) for every panel target of every generated dashboard."""
    found = []
    for path in sorted((repo_root() / "dashboards" / "generated").glob("*.json")):
        board = json.loads(Path(path).read_text())
        for panel in _panels(board.get("panels") or []):
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if expr:
                    found.append((board.get("title", path.name), panel.get("title", "?"), convert(expr)))
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard title, variable name, PromQL) for every Prometheus query variable."""
    found = []
    for path in sorted((repo_root() / "dashboards" / "generated").glob("*.json")):
        board = json.loads(Path(path).read_text())
        for var in (board.get("templating") or {}).get("list") or []:
            query = var.get("query")
            if var.get("type") == "query" and isinstance(query, dict):
                query = query.get("query")
            if var.get("type") == "query" and query:
                found.append(
                    (
                        board.get("title", path.name),
                        var["name"],
                        variable_query_to_promql(grafana_to_promql(query)),
                    )
                )
    return found


def _warm(api: PrometheusAPI) -> bool:
    """Every demo job up, with at least three samples in the last minute (enough for rate())."""
    result = api.query('count_over_time(up{job=~"opencompute-.*"}[1m]) >= 3 and up == 1')
    return {r["metric"].get("job") for r in result} >= set(JOBS.values())


@pytest.fixture(scope="module")
def api(demo: Demo) -> PrometheusAPI:
    """The demo's Prometheus once every job has been scraped a few times."""
    assert demo.prometheus_url is not None
    prometheus = PrometheusAPI(demo.prometheus_url)
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while not _warm(prometheus):
        assert time.monotonic() < deadline, f"demo targets not scraped in time: {prometheus.targets()}"
        time.sleep(0.5)
    return prometheus


def test_every_dashboard_variable_offers_at_least_one_value_in_the_demo(api: PrometheusAPI) -> None:
    variables = variable_queries()
    assert len(variables) >= 8
    empty = [f"{board} / ${name}: {expr}" for board, name, expr in variables if not api.query(expr)]
    assert not empty, "dashboard variables without values in the demo:\n" + "\n".join(empty)


def test_every_dashboard_panel_query_returns_data_from_the_demo(api: PrometheusAPI) -> None:
    queries = panel_queries()
    assert len(queries) >= 20, "dashboards/generated/*.json should hold the generated dashboards"

    gap_exprs = {expr for _, panel, expr in queries if panel in KNOWN_GAPS}
    pending = {q[2] for q in queries}
    deadline = time.monotonic() + DATA_TIMEOUT
    while True:
        pending = {expr for expr in pending if not api.query(expr)}
        if not pending - gap_exprs or time.monotonic() >= deadline:
            break
        time.sleep(1.0)

    empty = [
        f"{board} / {panel}: {expr}"
        for board, panel, expr in queries
        if expr in pending and panel not in KNOWN_GAPS
    ]
    assert not empty, "panel queries without data in the demo:\n" + "\n".join(empty)
    gaps = {panel for _, panel, _ in queries if panel in KNOWN_GAPS}
    assert gaps == set(KNOWN_GAPS), f"KNOWN_GAPS names panels that no longer exist: {set(KNOWN_GAPS) - gaps}"
    filled = [f"{panel}: {expr}" for _, panel, expr in queries if panel in KNOWN_GAPS and expr not in pending]
    assert not filled, "a known gap returns data now; remove it from KNOWN_GAPS:\n" + "\n".join(filled)
