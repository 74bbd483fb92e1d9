"""End to end: demo exporters -> real Prometheus -> alert rules -> real Alertmanager -> webhook.

The demo's own miner exporter holds the hotkey of a simulated miner that exactly one trusted
validator penalizes, in its ``penalized_hotkeys_checklist``; the demo passes that validator as
``--network.penalty-authority``. The network exporter reports the penalty as enforced, the generated
``OpenComputeMinerPenalized`` rule joins it with the miner's ``opencompute_identity_info`` on
``hotkey``, and Alertmanager delivers it. Republishing that validator's run without the penalty
(signed, through the real publisher) must clear the alert with a resolved notification.

Time is compressed in the demo's copy of the rules only: ``for: 5m`` is capped at 1 s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers.stack import PrometheusAPI, poll

from exporters.demo.orchestrator import Demo
from exporters.demo.promstack import WebhookReceiver

pytestmark = pytest.mark.integration

ALERT = "OpenComputeMinerPenalized"


def _diagnostics(demo: Demo) -> str:
    """What Prometheus saw, for a failure message that says where it broke."""
    assert demo.prometheus_url is not None
    api = PrometheusAPI(demo.prometheus_url)
    parts = []
    try:
        parts.append("targets: " + json.dumps([(t["labels"]["job"], t["health"]) for t in api.targets()]))
        parts.append("alerts: " + json.dumps([(a["labels"]["alertname"], a["state"]) for a in api.alerts()]))
        parts.append("penalized: " + json.dumps(api.query("opencompute_network_miner_penalized")))
        parts.append("enforced: " + json.dumps(api.query("opencompute_network_miner_penalty_enforced")))
        parts.append("identity: " + json.dumps(api.query("opencompute_identity_info")))
    except OSError as exc:
        parts.append(f"Prometheus API unreachable: {exc}")
    for child in demo.supervisor.children:
        parts.append(f"--- {child.name} ---\n{child.log_tail(8)}")
    return "\n".join(parts)


def _is_ours(hotkey: str) -> Any:
    return lambda alert: alert["labels"].get("alertname") == ALERT and alert["labels"].get("hotkey") == hotkey


def test_our_penalized_miner_alerts_and_resolves_once_the_validator_lifts_the_penalty(
    demo: Demo, webhook: WebhookReceiver
) -> None:
    assert demo.subnet is not None and demo.prometheus_url is not None
    ours = demo.subnet.our_miner_hotkey

    fired = webhook.wait_for(_is_ours(ours), "firing", timeout=40)
    assert fired is not None, f"no firing {ALERT} for {ours} reached the webhook\n{_diagnostics(demo)}"
    assert fired["labels"]["severity"] == "critical"
    assert fired["annotations"]["runbook_url"].endswith("#opencomputeminerpenalized")
    assert ours in fired["annotations"]["description"]
    assert PrometheusAPI(demo.prometheus_url).query(
        f'opencompute_network_miner_penalized{{hotkey="{ours}",list="penalized_hotkeys_checklist"}}'
    ), "the enforced penalty should also be listed, with the list it comes from"

    # Other penalized miners are not ours: the join on hotkey keeps them out of this alert.
    strangers = {
        a["labels"].get("hotkey")
        for note in webhook.notifications
        for a in note.alerts
        if a["labels"].get("alertname") == ALERT
    } - {ours}
    assert strangers == set()

    seq = demo.lift_penalty()
    assert seq >= 2, "the republished run must carry a higher sequence number than the seeded one"

    api = PrometheusAPI(demo.prometheus_url)
    cleared = poll(
        lambda: api.query(
            f'opencompute_network_miner_penalized{{hotkey="{ours}"}}'
            f' or opencompute_network_miner_penalty_enforced{{hotkey="{ours}"}}'
        ),
        lambda r: r == [],
        timeout=20,
    )
    assert cleared == [], f"the network exporter still reports the penalty\n{_diagnostics(demo)}"

    resolved = webhook.wait_for(_is_ours(ours), "resolved", timeout=30)
    assert resolved is not None, f"no resolved {ALERT} notification for {ours}\n{_diagnostics(demo)}"
    assert resolved["endsAt"] >= fired["startsAt"]


def test_every_link_the_demo_prints_answers_with_the_packages_the_readme_installs(demo: Demo) -> None:
    import urllib.request

    checked = []
    for name, url in demo.urls.items():
        if "webhook" in name:
            continue  # POST only: Alertmanager delivers there
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200, (name, url)
        checked.append(url)
    assert any(u.endswith("/classic/alerts") for u in checked), checked
    assert any(u.endswith("/api/v2/alerts") for u in checked), checked
    assert len(checked) >= 6, checked
