"""The demo's Prometheus/Alertmanager configs are valid, its rule copies compress time, alerts print."""

from __future__ import annotations

import io
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from helpers.stack import require_binaries

from exporters.demo import promstack
from exporters.demo.orchestrator import Demo, DemoConfig, cap_rule_durations, default_rule_files, repo_root


def test_durations_are_written_the_way_prometheus_reads_them():
    assert [promstack._duration(s) for s in (1, 0.5, 60, 90, 300)] == ["1s", "500ms", "1m", "90s", "5m"]


@pytest.mark.integration
def test_the_generated_prometheus_config_passes_promtool(tmp_path):
    require_binaries()
    rules = [
        promstack.write_yaml(
            tmp_path / "r.yml", {"groups": [{"name": "g", "rules": [{"record": "x", "expr": "up"}]}]}
        )
    ]
    cfg = promstack.prometheus_config(
        {"opencompute-miner": "127.0.0.1:9927", "opencompute-network": "[::1]:9929"},
        rule_files=rules,
        alertmanager="127.0.0.1:19093",
        scrape_interval=1.0,
        evaluation_interval=1.0,
    )
    path = promstack.write_yaml(tmp_path / "prometheus.yml", cfg)
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_the_generated_alertmanager_config_passes_amtool(tmp_path):
    require_binaries()
    path = promstack.write_yaml(
        tmp_path / "am.yml", promstack.alertmanager_config("http://127.0.0.1:19095/alerts")
    )
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    receiver = yaml.safe_load(path.read_text())["receivers"][0]
    assert receiver["webhook_configs"][0]["send_resolved"] is True


def test_rule_copies_cap_only_the_for_durations_longer_than_the_cap():
    data = {
        "groups": [
            {
                "name": "g",
                "interval": "1m",
                "rules": [
                    {"alert": "Slow", "expr": "up == 0", "for": "1h30m"},
                    {"alert": "Quick", "expr": "up == 0", "for": "10s"},
                    {"alert": "Now", "expr": "up == 0"},
                    {"record": "r", "expr": "up"},
                ],
            }
        ]
    }
    capped = cap_rule_durations(data, 30.0, 5.0)
    rules = capped["groups"][0]["rules"]
    assert [r.get("for") for r in rules] == ["30s", "10s", None, None]
    assert capped["groups"][0]["interval"] == "5s"
    assert (
        cap_rule_durations(
            {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "5m"}]}]}, None, None
        )["groups"][0]["rules"][0]["for"]
        == "5m"
    )


def test_every_committed_rule_file_survives_the_demo_copy(tmp_path):
    files = default_rule_files()
    assert files, "alerts/generated/*.yml should exist"
    for path in files:
        original = yaml.safe_load(path.read_text())
        copy = cap_rule_durations(yaml.safe_load(path.read_text()), 30.0, 5.0)
        names = [r.get("alert") or r.get("record") for g in original["groups"] for r in g["rules"]]
        assert names == [r.get("alert") or r.get("record") for g in copy["groups"] for r in g["rules"]]
        assert [r["expr"] for g in original["groups"] for r in g["rules"]] == [
            r["expr"] for g in copy["groups"] for r in g["rules"]
        ]


def test_the_demo_prints_each_alert_it_receives(tmp_path):
    out = io.StringIO()
    demo = Demo(DemoConfig(directory=tmp_path, echo=None, out=out))
    receiver = promstack.WebhookReceiver(on_notification=demo._print_notification).start()
    try:
        payload = {
            "version": "4",
            "status": "firing",
            "receiver": "demo-webhook",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {
                        "alertname": "OpenComputeMinerPenalized",
                        "hotkey": "5Fabc",
                        "severity": "critical",
                    },
                    "annotations": {"summary": "One of our miners is penalized by the validators."},
                }
            ],
        }
        request = urllib.request.Request(receiver.url, data=json.dumps(payload).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        assert receiver.wait_for(lambda a: True, "firing", timeout=5) is not None
    finally:
        receiver.shutdown()
    line = out.getvalue().strip()
    assert line.startswith("ALERT FIRING")
    assert "OpenComputeMinerPenalized" in line and "hotkey=5Fabc" in line and "severity=critical" in line
    assert line.endswith(":: One of our miners is penalized by the validators.")


def test_the_webhook_receiver_rejects_a_body_that_is_not_json(tmp_path):
    receiver = promstack.WebhookReceiver().start()
    try:
        request = urllib.request.Request(receiver.url, data=b"not json", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=5)
        assert err.value.code == 400
        assert receiver.notifications == []
    finally:
        receiver.shutdown()


def test_missing_binaries_are_found_as_missing(tmp_path: Path):
    assert promstack.find_binary(("prometheus",), path=str(tmp_path)) is None


def test_the_demo_copy_says_the_for_it_has():
    """An alert text mentioning "for 5m" says "for 30s" in the demo's copy, which waits 30 s."""
    files = default_rule_files()
    mentioned = 0
    for path in files:
        copy = cap_rule_durations(yaml.safe_load(path.read_text()), 30.0, 5.0)
        for rule in (r for g in copy["groups"] for r in g["rules"] if "for" in r):
            for text in rule["annotations"].values():
                for said in re.findall(r"\bfor (\d+[smhd])\b", text):
                    mentioned += 1
                    assert said == rule["for"], (rule["alert"], said, rule["for"])
    assert mentioned >= 8, "descriptions name their for: durations"


def test_the_committed_rules_say_the_for_they_have():
    for path in default_rule_files():
        for rule in (r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]):
            for text in rule.get("annotations", {}).values():
                for said in re.findall(r"\bfor (\d+[smhd])\b", text):
                    assert said == rule.get("for"), (rule["alert"], said, rule.get("for"))


@pytest.mark.integration
def test_the_demo_uses_the_shipped_routing_and_inhibition_and_amtool_accepts_it(tmp_path):
    require_binaries()
    shipped = repo_root() / "deploy" / "alertmanager" / "alertmanager.yml"
    original = yaml.safe_load(shipped.read_text())
    config = promstack.shipped_alertmanager_config(
        shipped, "http://127.0.0.1:19095/alerts", group_interval=1.0
    )
    assert config["inhibit_rules"] == original["inhibit_rules"]
    assert [r["receiver"] for r in config["route"]["routes"]] == ["pager", "chat", "null"]
    pager = config["route"]["routes"][0]
    assert config["route"]["group_interval"] == "1s" and pager["group_wait"] == "1s"
    assert pager["repeat_interval"] == "60m" and "group_interval" not in pager  # inherits the root's
    hooks = {r["name"]: [h["url"] for h in r.get("webhook_configs", [])] for r in config["receivers"]}
    assert hooks == {
        "pager": ["http://127.0.0.1:19095/alerts/pager"],
        "chat": ["http://127.0.0.1:19095/alerts/chat"],
        "null": [],
    }
    path = promstack.write_yaml(tmp_path / "am.yml", config)
    result = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
