"""Grafana variable substitution, so dashboard queries can be sent to a real Prometheus."""

from __future__ import annotations

import pytest

from dashboards.queries import GRAFANA_BUILTINS, grafana_to_promql, variable_query_to_promql


def test_rate_interval_and_dashboard_variables_become_concrete_values() -> None:
    expr = 'rate(x_total{job=~"$job",instance=~"$instance"}[$__rate_interval])'
    assert grafana_to_promql(expr) == 'rate(x_total{job=~".+",instance=~".+"}[1m])'


def test_all_grafana_variable_spellings_are_replaced() -> None:
    expr = 'x{a=~"${job}",b=~"${job:regex}",c=~"[[job]]"}[$__interval] offset $__range'
    out = grafana_to_promql(expr, {"job": "opencompute-miner|opencompute-network"})
    assert out == (
        'x{a=~"opencompute-miner|opencompute-network",b=~"opencompute-miner|opencompute-network",'
        'c=~"opencompute-miner|opencompute-network"}[30s] offset 1h'
    )


def test_longer_builtin_names_are_not_cut_short() -> None:
    assert grafana_to_promql("$__range_s $__range $__interval_ms") == "3600 1h 30000"
    assert GRAFANA_BUILTINS["__rate_interval"] == "1m"


def test_callers_override_the_defaults() -> None:
    out = grafana_to_promql('up{instance=~"$instance"}', {"instance": "miner-1:9927"})
    assert out == 'up{instance=~"miner-1:9927"}'


def test_an_unknown_variable_is_an_error_not_a_stray_dollar() -> None:
    with pytest.raises(KeyError, match="nosuchvar"):
        grafana_to_promql('up{job=~"$nosuchvar"}')


def test_label_values_queries_become_their_selector() -> None:
    text = 'label_values(opencompute_identity_info{role="miner",job=~"$job"}, hotkey)'
    assert variable_query_to_promql(text) == 'opencompute_identity_info{role="miner",job=~"$job"}'
    assert variable_query_to_promql("label_values(job)") == '{__name__=~".+"}'
    assert variable_query_to_promql("query_result(topk(3, up))") == "topk(3, up)"
    assert variable_query_to_promql("up == 1") == "up == 1"
