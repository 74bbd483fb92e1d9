"""End to end: dashboards stay right with two network exporter replicas and behind remote_write.

Replicas: the shared demo runs two network exporters on the same store, scraped by one job (as
the shipped 2-replica Deployment is). Every panel query that reads network-exporter metrics is
evaluated on that real Prometheus twice at the same instant: with ``$instance`` selecting one
replica (the one-replica set-up) and with both. The results must be the same series with the
same values; a ``sum``/``count`` over both replicas would double. Panels of the Exporter health
dashboard that list each target (their series carry ``instance``) show each replica by design.

remote_write: a second Prometheus runs ``deploy/prometheus/prometheus-remote-write.yml``'s
external labels and ``remote_write`` block (URL pointed at a third Prometheus started with
``--web.enable-remote-write-receiver``) and scrapes the demo. Every panel query of every
dashboard must return the same series and values on the receiver as on the sender, at the same
instant, apart from the external labels the sender adds. Bounded: ~30 s.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.promservers import Servers, shipped_prometheus
from helpers.stack import PrometheusAPI, poll
from test_e2e_dashboards import panel_queries

from dashboards.queries import grafana_to_promql
from exporters.demo import promstack
from exporters.demo.orchestrator import JOBS, Demo

pytestmark = pytest.mark.integration

PER_TARGET_BOARD = "OpenCompute / Exporter health"
WARM = 'count_over_time(up{job=~"opencompute-.*"}[1m]) >= 3'


def _raw_queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel, Grafana expression) of every panel target."""
    return panel_queries(convert=lambda expr: expr)


def _result(api: PrometheusAPI, expr: str, at: float, drop: frozenset[str] = frozenset()) -> dict:
    """{frozenset(labels minus ``drop``): value} of an instant query."""
    found = {}
    for series in api.query(expr, at=at):
        labels = frozenset((k, v) for k, v in series["metric"].items() if k not in drop)
        found[labels] = float(series["value"][1])
    return found


def _tolerance(expr: str) -> tuple[float, float]:
    """(absolute, relative) slack: ages move with each replica's refresh, rates with its counters."""
    if "time()" in expr:
        return 3.0, 0.0
    if "increase(" in expr or "rate(" in expr:
        return 0.5, 0.2
    return 1e-9, 1e-9


def _differs(one: dict, two: dict, expr: str) -> str | None:
    if set(one) != set(two):
        return f"series differ: {sorted(map(sorted, one))[:3]} vs {sorted(map(sorted, two))[:3]}"
    slack, rel = _tolerance(expr)
    for labels, value in one.items():
        other = two[labels]
        if math.isnan(value) and math.isnan(other):
            continue
        if not abs(value - other) <= max(slack, rel * abs(value)):
            return f"{dict(labels)}: {value} vs {other}"
    return None


@pytest.fixture(scope="module")
def demo_api(demo: Demo) -> PrometheusAPI:
    assert demo.prometheus_url is not None and demo.config.network_replica_addresses
    api = PrometheusAPI(demo.prometheus_url)
    up = poll(lambda: api.query(f'{WARM} and up{{job="{JOBS["network"]}"}} == 1'), lambda r: len(r) == 2, 30)
    assert len(up) == 2, "both network exporter replicas must be scraped"
    return api


def test_every_network_panel_shows_the_same_with_one_and_with_two_network_exporter_replicas(
    demo: Demo, demo_api: PrometheusAPI
) -> None:
    host, port = demo.config.network_address
    one_replica = {"instance": f"{host}:{port}"}
    at = time.time() - 1
    compared, problems = 0, []
    for board, panel, expr in _raw_queries():
        if "opencompute_network_" not in expr:
            continue
        both = _result(demo_api, grafana_to_promql(expr), at)
        single = _result(demo_api, grafana_to_promql(expr, one_replica), at)
        if board == PER_TARGET_BOARD and any(k == "instance" for labels in both for k, _ in labels):
            continue  # lists each target on purpose
        compared += 1
        problem = _differs(single, both, expr)
        if problem:
            problems.append(f"{board} / {panel}: {problem}\n    {expr}")
    assert compared >= 25, f"only {compared} network panel queries compared"
    assert not problems, "panels that change with a second replica:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def sender_and_receiver(demo: Demo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    servers = Servers(Path(tmp_path_factory.mktemp("remote-write")))
    try:
        receiver = servers.start_prometheus(
            "receiver",
            promstack.prometheus_config({}, scrape_interval=1.0),
            args=["--web.enable-remote-write-receiver"],
        )
        cfg = demo.config
        targets = {
            JOBS["miner"]: f"{cfg.miner_address[0]}:{cfg.miner_address[1]}",
            JOBS["validator"]: f"{cfg.validator_address[0]}:{cfg.validator_address[1]}",
            JOBS["network"]: [f"{h}:{p}" for h, p in (cfg.network_address, *cfg.network_replica_addresses)],
        }
        config = shipped_prometheus(
            "prometheus-remote-write.yml", targets, remote_write_url=f"{receiver}/api/v1/write"
        )
        sender = servers.start_prometheus("sender", config)
        yield PrometheusAPI(sender), PrometheusAPI(receiver), config["global"]["external_labels"]
    finally:
        servers.stop()


def test_every_panel_query_returns_the_same_on_a_remote_write_receiver(
    sender_and_receiver: tuple[PrometheusAPI, PrometheusAPI, dict[str, str]],
) -> None:
    sender, receiver, external = sender_and_receiver
    assert external, "the shipped config sets external labels"
    warm = poll(lambda: sender.query(WARM), lambda r: len(r) >= 4, timeout=30)
    assert len(warm) >= 4, f"the sender did not scrape the demo: {sender.targets()}"
    at = time.time() - 1
    # The receiver holds what was sent up to `at` once its newest sample is newer than that.
    caught_up = poll(
        lambda: receiver.query('max(timestamp(up{job=~"opencompute-.*"}))'),
        lambda r: bool(r) and float(r[0]["value"][1]) >= at + 1,
        timeout=15,
    )
    assert caught_up, "nothing arrived on the remote-write receiver"
    drop = frozenset(external)
    problems, compared, filled = [], 0, 0
    for board, panel, expr in _raw_queries():
        promql = grafana_to_promql(expr)
        here = _result(sender, promql, at, drop)
        there = _result(receiver, promql, at, drop)
        compared += 1
        filled += bool(here)
        if set(here) != set(there) or any(
            not (math.isnan(v) and math.isnan(there[k])) and not math.isclose(v, there[k], rel_tol=1e-9)
            for k, v in here.items()
        ):
            problems.append(f"{board} / {panel}: {len(here)} vs {len(there)} series\n    {promql}")
    assert filled >= compared * 0.8, f"only {filled} of {compared} queries had data on the sender"
    assert not problems, "panel queries that differ on the receiver:\n" + "\n".join(problems)
    # The receiver's series carry the sender's external labels (how a global view tells sources apart).
    labelled = receiver.query('up{job="opencompute-miner"}', at=at)
    assert all(re.fullmatch(".+", s["metric"].get(k, "")) for s in labelled for k in external), labelled
