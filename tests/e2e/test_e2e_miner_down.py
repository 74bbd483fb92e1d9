"""End to end: our miner's host dies while its penalty is enforced; the page stays, no RESOLVED.

A fresh demo (its own exporters, real Prometheus, real Alertmanager with the shipped routing and
inhibit rules of deploy/alertmanager/alertmanager.yml, timings compressed) runs until
``OpenComputeMinerPenalized`` has paged for our miner and one of its GPU XID alerts fires. Then
the miner exporter is SIGKILLed, as when its host dies. What must happen:

* ``OpenComputeMinerPenalized`` stays firing: "ours" is declared to the network exporter
  (``--network.our-hotkeys``), so it does not depend on the dead exporter;
* ``OpenComputeExporterDown`` pages for the miner target (time from kill to page measured);
* the miner's own alerts (the XID alert) stay firing in Prometheus, are inhibited in
  Alertmanager, and nobody receives RESOLVED for anything of that miner.

In production ``OpenComputeExporterDown`` waits 5m; the demo caps every ``for:`` at 1 s, so the
whole story takes seconds here. Bounded: about 30 s after the demo is up.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.stack import PrometheusAPI, poll, running_demo

from exporters.demo.orchestrator import JOBS, Demo
from exporters.demo.promstack import WebhookReceiver

pytestmark = pytest.mark.integration

PAGE = "OpenComputeMinerPenalized"
XIDS = ("OpenComputeGPUCriticalXid", "OpenComputeGPUXidError")
OBSERVE_AFTER_KILL = 12.0  # > 10 evaluations and Alertmanager group intervals of the demo


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver("127.0.0.1", 0).start()
    try:
        yield receiver
    finally:
        receiver.shutdown()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, hook: WebhookReceiver) -> Iterator[Demo]:
    with running_demo(tmp_path_factory.mktemp("miner-down"), hook.url, lift_penalty_after=None) as demo:
        yield demo


def _am_alerts(demo: Demo) -> list[dict[str, Any]]:
    assert demo.alertmanager_url is not None
    with urllib.request.urlopen(f"{demo.alertmanager_url}/api/v2/alerts", timeout=5) as resp:
        return list(json.load(resp))


def _firing(api: PrometheusAPI, name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in api.alerts()
        if a["labels"].get("alertname") == name
        and a["state"] == "firing"
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def _ours_resolved(hook: WebhookReceiver, hotkey: str, instance: str) -> list[tuple[str, str]]:
    return [
        (a["labels"].get("alertname", ""), note.receiver)
        for note in list(hook.notifications)
        for a in note.alerts
        if a.get("status") == "resolved"
        and (a["labels"].get("hotkey") == hotkey or a["labels"].get("instance") == instance)
    ]


def test_a_killed_miner_exporter_keeps_its_penalty_paging_and_sends_no_resolved(
    stack: Demo, hook: WebhookReceiver, tmp_path: Path
) -> None:
    assert stack.subnet is not None and stack.prometheus_url is not None
    api = PrometheusAPI(stack.prometheus_url)
    ours = stack.subnet.our_miner_hotkey
    miner = f"{stack.config.miner_address[0]}:{stack.config.miner_address[1]}"

    paged = hook.wait_for(
        lambda a: a["labels"].get("alertname") == PAGE and a["labels"]["hotkey"] == ours, "firing", timeout=40
    )
    assert paged is not None, f"{PAGE} never paged: {[a['labels'] for a in api.alerts()]}"
    xid = poll(lambda: [a for name in XIDS for a in _firing(api, name, instance=miner)], bool, timeout=20)
    assert xid, f"no XID alert fired for the simulated miner: {[a['labels'] for a in api.alerts()]}"
    xid_name = xid[0]["labels"]["alertname"]
    assert _ours_resolved(hook, ours, miner) == [], "nothing of ours may resolve before the kill"

    stack.kill_miner()
    killed = time.monotonic()
    down = hook.wait_for(
        lambda a: (
            a["labels"].get("alertname") == "OpenComputeExporterDown" and a["labels"].get("instance") == miner
        ),
        "firing",
        timeout=30,
    )
    kill_to_page = time.monotonic() - killed
    assert down is not None, f"no OpenComputeExporterDown page: {[a['labels'] for a in api.alerts()]}"
    assert down["labels"]["job"] == JOBS["miner"] and down["labels"]["severity"] == "critical"

    time.sleep(max(0.0, OBSERVE_AFTER_KILL - (time.monotonic() - killed)))
    assert _ours_resolved(hook, ours, miner) == [], "RESOLVED was sent for our dead miner"
    assert _firing(api, PAGE, hotkey=ours), "the penalty page must stay firing while the miner is down"
    assert _firing(api, xid_name, instance=miner), f"{xid_name} must be held, not resolved"
    am = [a for a in _am_alerts(stack) if a["labels"].get("alertname") == xid_name]
    assert am and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in am), am
    penalized = [a for a in _am_alerts(stack) if a["labels"].get("alertname") == PAGE]
    assert [a["status"]["state"] for a in penalized] == ["active"], "the penalty is not inhibited"
    print(
        f"\nminer exporter SIGKILLed: OpenComputeExporterDown paged after {kill_to_page:.1f} s; "
        f"{PAGE} stayed firing, {xid_name} held and inhibited, 0 RESOLVED in {OBSERVE_AFTER_KILL:.0f} s"
    )
