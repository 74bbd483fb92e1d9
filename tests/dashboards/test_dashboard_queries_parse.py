"""Every dashboard query parses in a real Prometheus once Grafana's variables are substituted.

A bare Prometheus (no targets) answers 200 for a valid expression even without data and 400
``bad_data`` for one that does not parse, so this catches PromQL typos, wrong label-matcher
syntax and mistakes in the variable substitution itself. Whether each panel returns data is
checked separately against the demo (tests/e2e).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers.promql import query, running_prometheus

import dashboards
from dashboards.queries import grafana_to_promql, variable_query_to_promql

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_prometheus(Path(tmp_path_factory.mktemp("prometheus"))) as base_url:
        yield base_url


def _panel_targets() -> list[tuple[str, str, str]]:
    found = []
    for uid, board in dashboards.build_all().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((uid, panel["title"], target["expr"]))
    return found


def _variable_queries() -> list[tuple[str, str, str]]:
    return [
        (uid, variable["name"], variable["query"])
        for uid, board in dashboards.build_all().items()
        for variable in board["templating"]["list"]
        if variable["type"] == "query"
    ]


def test_every_panel_query_parses_in_prometheus(prometheus: str) -> None:
    targets = _panel_targets()
    assert len(targets) > 60
    failures = []
    for uid, title, expr in targets:
        result = query(prometheus, grafana_to_promql(expr))
        if not result.ok:
            failures.append(f"{uid} / {title}: {result.status} {result.error}\n    {expr}")
    assert not failures, "panel queries Prometheus rejects:\n" + "\n".join(failures)


def test_every_template_variable_query_parses_in_prometheus(prometheus: str) -> None:
    variables = _variable_queries()
    assert len(variables) >= 12
    failures = []
    for uid, name, text in variables:
        result = query(prometheus, grafana_to_promql(variable_query_to_promql(text)))
        if not result.ok:
            failures.append(f"{uid} ${name}: {result.status} {result.error}\n    {text}")
    assert not failures, "variable queries Prometheus rejects:\n" + "\n".join(failures)


def test_the_parse_check_rejects_a_broken_query(prometheus: str) -> None:
    """The check above can fail: an unbalanced selector is a 400 bad_data, not a 200."""
    result = query(prometheus, grafana_to_promql('sum(opencompute_gpus{job=~"$job"'))
    assert result.status == 400
    assert result.body["errorType"] == "bad_data"


def test_a_query_left_with_a_grafana_variable_is_rejected(prometheus: str) -> None:
    """Why substitution matters: Prometheus itself cannot parse ``$__rate_interval``."""
    result = query(prometheus, "rate(opencompute_gpu_energy_consumption_joules_total[$__rate_interval])")
    assert result.status == 400
