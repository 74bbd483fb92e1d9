"""End to end: the HA topology deploy/ ships delivers each alert group once, and survives losses.

Two real Prometheus servers run ``deploy/prometheus/prometheus-ha.yml``'s labels and alerting
(``replica`` = a / b from the environment with ``--enable-feature=expand-external-labels``, the
replica label dropped for Alertmanager), the same generated GPU rules (``for:`` capped at 1 s),
and scrape one stand-in exporter. Both send to two real Alertmanagers with the shipped routing
(``deploy/alertmanager/alertmanager.yml``, timings compressed) that form one cluster over
loopback gossip (``--cluster.listen-address`` / ``--cluster.peer``). Four alert deliveries per
alert (2 x 2), one webhook notification per group. Then one Prometheus and one Alertmanager are
SIGKILLed and a new alert must still page, once. Bounded: ~35 s.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from helpers.promservers import DEPLOY, SampleServer, Servers, shipped_prometheus
from helpers.stack import poll

from exporters.demo import promstack
from exporters.demo.orchestrator import cap_rule_durations, default_rule_files

pytestmark = pytest.mark.integration

ALERT = "OpenComputeGPURowRemapFailure"  # critical: routed to the pager
SETTLE = 6.0  # > group_wait + peer timeout + gossip: a duplicate would have arrived by then


def _gpu_rules(directory: Path) -> list[Path]:
    (source,) = [p for p in default_rule_files() if p.name == "gpu.yml"]
    capped = cap_rule_durations(yaml.safe_load(source.read_text()), 1.0, 1.0)
    return [promstack.write_yaml(directory / "gpu.yml", capped)]


def _firing(hook: promstack.WebhookReceiver, gpu: str) -> list[promstack.Notification]:
    return [
        note
        for note in list(hook.notifications)
        if note.status == "firing"
        and any(
            a["status"] == "firing"
            and a["labels"].get("alertname") == ALERT
            and a["labels"].get("gpu") == gpu
            for a in note.alerts
        )
        and note.receiver == "pager"
    ]


@pytest.fixture
def hook() -> Iterator[promstack.WebhookReceiver]:
    receiver = promstack.WebhookReceiver("127.0.0.1", 0).start()
    try:
        yield receiver
    finally:
        receiver.shutdown()


def test_two_prometheus_and_two_clustered_alertmanagers_page_once_and_survive_losing_one_of_each(
    tmp_path: Path, hook: promstack.WebhookReceiver
) -> None:
    exporter = SampleServer()
    servers = Servers(tmp_path)
    try:
        for gpu in ("0", "1"):
            exporter.set("opencompute_gpu_remapped_rows_failure", 0, gpu=gpu, uuid=f"GPU-{gpu}")
        am_config = promstack.shipped_alertmanager_config(
            DEPLOY / "alertmanager" / "alertmanager.yml", hook.url, group_wait=1.0, group_interval=1.0
        )
        am_a, am_b = servers.start_alertmanager_cluster(["alertmanager-a", "alertmanager-b"], am_config)
        rules = _gpu_rules(tmp_path)
        for replica in ("a", "b"):
            config = shipped_prometheus(
                "prometheus-ha.yml",
                {"opencompute-miner": exporter.address},
                rule_files=rules,
                alertmanagers=[am_a.removeprefix("http://"), am_b.removeprefix("http://")],
            )
            assert config["global"]["external_labels"]["replica"] == "${PROMETHEUS_REPLICA}"
            servers.start_prometheus(
                f"prometheus-{replica}",
                config,
                args=["--enable-feature=expand-external-labels"],
                env={"PROMETHEUS_REPLICA": replica},
            )

        exporter.set("opencompute_gpu_remapped_rows_failure", 1, gpu="0", uuid="GPU-0")
        started = time.monotonic()
        first = poll(lambda: _firing(hook, "0"), bool, timeout=25)
        to_page = time.monotonic() - started
        assert first, f"no page for GPU 0: {hook.notifications}"
        time.sleep(SETTLE)
        before = _firing(hook, "0")
        assert len(before) == 1, f"one notification per group, got {len(before)}: {before}"
        (alert,) = [a for a in before[0].alerts if a["labels"]["gpu"] == "0"]
        assert "replica" not in alert["labels"] and alert["labels"]["severity"] == "critical"
        with urllib.request.urlopen(f"{am_b}/api/v2/status", timeout=5) as resp:
            peers = json.load(resp)["cluster"]["peers"]
        assert len(peers) == 2, f"the Alertmanagers did not form one cluster: {peers}"

        servers.kill("prometheus-a")
        servers.kill("alertmanager-a")
        killed = time.monotonic()
        exporter.set("opencompute_gpu_remapped_rows_failure", 1, gpu="1", uuid="GPU-1")
        second = poll(lambda: _firing(hook, "1"), bool, timeout=30)
        after_kill = time.monotonic() - killed
        assert second, "no page after losing one Prometheus and one Alertmanager"
        time.sleep(SETTLE)
        after = _firing(hook, "1")
        assert len(after) == 1, f"one notification for the changed group, got {len(after)}"
        total = len([n for n in hook.notifications if n.status == "firing"])
        print(
            f"\nHA: first page {to_page:.1f} s after the alert condition, {len(before)} notification "
            f"for 2 Prometheus x 2 Alertmanagers; after killing prometheus-a and alertmanager-a the "
            f"next page came {after_kill:.1f} s after its condition, {len(after)} notification; "
            f"{total} firing notifications in all"
        )
    finally:
        servers.stop()
        exporter.close()
