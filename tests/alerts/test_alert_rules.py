"""The generated alert rules: current, valid for promtool, unit-tested per alert, actionable.

``promtool`` is the real Debian binary; when it is missing these tests FAIL (a skip would let a
broken CI image pass without checking a single rule).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers.generated import assert_generated_files_current

import alerts
from alerts import builder, thresholds
from dashboards import queries
from exporters import dashboard_uids as uids

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "alerts" / "generated"
PROMTOOL_TESTS = REPO / "alerts" / "tests"
RUNBOOK = REPO / "docs" / "runbook.md"
CONTRACT = REPO / "docs" / "metrics-contract.md"
ANNOTATIONS = ("summary", "description", "runbook_url", "dashboard_url")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is required for the alert tests: apt-get install prometheus")
    return path


def _rules() -> list[dict[str, Any]]:
    return [rule for group in alerts.build_rule_groups() for rule in group["rules"]]


def _promtool_tests() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(PROMTOOL_TESTS.glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        found.extend((path, test) for test in document["tests"])
    return found


def test_committed_rule_files_are_what_the_code_generates() -> None:
    assert_generated_files_current(alerts.render_files(), GENERATED, "*.yml")


def test_rendering_twice_gives_identical_bytes() -> None:
    assert alerts.render_files() == alerts.render_files()


@pytest.mark.parametrize("name", sorted(alerts.render_files()))
def test_promtool_check_rules_accepts_each_generated_file(promtool: str, name: str) -> None:
    proc = subprocess.run(
        [promtool, "check", "rules", str(GENERATED / name)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    group = yaml.safe_load((GENERATED / name).read_text())["groups"][0]
    assert f"SUCCESS: {len(group['rules'])} rules found" in proc.stdout


def test_promtool_unit_tests_pass_for_every_rule_file(promtool: str) -> None:
    files = sorted(str(p) for p in PROMTOOL_TESTS.glob("*.yml"))
    assert len(files) == len(alerts.areas())
    proc = subprocess.run([promtool, "test", "rules", *files], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(files)


def test_every_alert_has_one_named_promtool_test_with_a_quiet_and_a_firing_case() -> None:
    tests = _promtool_tests()
    names = [test.get("name") for _, test in tests]
    assert len(names) == len(set(names)), "one test group per alert"
    by_name = {test["name"]: (path, test) for path, test in tests}
    problems = []
    for area in alerts.areas():
        for alert in area.alerts:
            if alert.name not in by_name:
                problems.append(f"{alert.name}: no test group named after it")
                continue
            path, test = by_name[alert.name]
            document = yaml.safe_load(path.read_text())
            if f"../generated/{area.stem}.yml" not in document["rule_files"]:
                problems.append(f"{alert.name}: {path.name} does not load {area.stem}.yml")
            cases = [c for c in test.get("alert_rule_test", []) if c["alertname"] == alert.name]
            quiet = [c for c in cases if not c.get("exp_alerts")]
            firing = [c for c in cases if c.get("exp_alerts")]
            if not quiet or not firing:
                problems.append(f"{alert.name}: needs a does-not-fire case and a firing case")
                continue
            if not min(_minutes(c["eval_time"]) for c in quiet) < min(
                _minutes(c["eval_time"]) for c in firing
            ):
                problems.append(f"{alert.name}: the does-not-fire case should come before it fires")
            for expected in (a for c in firing for a in c["exp_alerts"]):
                if expected["exp_labels"].get("severity") != alert.severity:
                    problems.append(f"{alert.name}: expected labels lack severity={alert.severity}")
                if set(expected.get("exp_annotations", {})) != set(ANNOTATIONS):
                    problems.append(f"{alert.name}: firing case must assert all of {ANNOTATIONS}")
    assert not problems, "\n".join(problems)


def _minutes(duration: str) -> float:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    assert match, duration
    return int(match.group(1)) * {"s": 1 / 60, "m": 1, "h": 60}[match.group(2)]


def test_every_alert_carries_severity_summary_description_and_links() -> None:
    rules = _rules()
    assert len(rules) >= 25
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert set(rule["annotations"]) == set(ANNOTATIONS), rule["alert"]
        assert rule["annotations"]["summary"].endswith("."), rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"{builder.RUNBOOK_URL}#{rule['alert'].lower()}"
        assert rule["annotations"]["runbook_url"].startswith(
            "https://github.com/opencompute-exporters/opencompute-exporters/blob/main/docs/runbook.md#"
        )
        dashboard = rule["annotations"]["dashboard_url"]
        assert dashboard.startswith(f"{builder.GRAFANA_URL}/d/"), rule["alert"]
        assert dashboard.removeprefix(f"{builder.GRAFANA_URL}/d/") in uids.ALL, rule["alert"]


def test_required_alerts_exist_with_their_severity() -> None:
    severity = {rule["alert"]: rule["labels"]["severity"] for rule in _rules()}
    required = {
        "OpenComputeMinerPenalized": "critical",
        "OpenComputeMinerListedAsPenalized": "warning",
        "OpenComputeMinerAllocationLost": "warning",
        "OpenComputeGPULost": "critical",
        "OpenComputeGPUCountDropped": "warning",
        "OpenComputeGPUCriticalXid": "critical",
        "OpenComputeGPUUncorrectableECC": "critical",
        "OpenComputeGPUThermalThrottling": "warning",
        "OpenComputeGPUPowerThrottling": "warning",
        "OpenComputeMinerPortClosed": "critical",
        "OpenComputeValidatorPoGStale": "warning",
        "OpenComputeValidatorStale": "info",
        "OpenComputeRunsRejected": "warning",
        "OpenComputeRunsMostlyV1Signed": "info",
        "OpenComputeMinerClaimMismatch": "warning",
        "OpenComputeCollectorFailing": "warning",
        "OpenComputeNetworkRefreshStale": "warning",
        "OpenComputePublishOutboxGrowing": "warning",
        "OpenComputeExporterDown": "critical",
        "OpenComputeExporterAbsent": "critical",
        "OpenComputeNVMLDown": "critical",
    }
    assert {name: severity.get(name) for name in required} == required


def test_our_miner_alerts_join_the_declared_hotkeys_replica_safe_on_hotkey() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    for name in (
        "OpenComputeMinerPenalized",
        "OpenComputeMinerListedAsPenalized",
        "OpenComputeMinerAllocationLost",
        "OpenComputeMinerClaimMismatch",
    ):
        assert builder.ours_selector("miner") in exprs[name]
        assert "* on (hotkey) group_left ()" in exprs[name]
    assert "opencompute_network_our_hotkey_info" in builder.ours_selector("miner")
    assert builder.ours_selector("miner").startswith("max by (hotkey) (")
    assert 'opencompute_identity_info{role="validator"}' in exprs["OpenComputeOwnValidatorStale"]


def test_alerts_on_a_targets_own_samples_hold_while_it_is_down_and_are_inhibited() -> None:
    """Every alert whose series come from one scraped target keeps firing while `up` is 0."""
    rules = {rule["alert"]: rule for rule in _rules()}
    held = {name for name, rule in rules.items() if "ALERTS{alertname=" in rule["expr"]}
    gpu = {a.name for a in alerts.areas()[1].alerts}
    assert gpu | {"OpenComputeMinerPortClosed", "OpenComputeValidatorPoGStale"} <= held
    assert "OpenComputeExporterDown" not in held and "OpenComputeMinerPenalized" not in held
    for name in held:
        expr = rules[name]["expr"]
        assert f'ALERTS{{alertname="{name}",alertstate="firing"}}' in expr, name
        assert "and on (job, instance)\n  up == 0" in expr, name


def test_the_runbook_base_url_is_configurable() -> None:
    groups = alerts.build_rule_groups(runbook_url="https://wiki.example.net/runbook")
    urls = {rule["annotations"]["runbook_url"] for group in groups for rule in group["rules"]}
    assert urls == {f"https://wiki.example.net/runbook#{a.anchor}" for a in alerts.all_alerts()}


def test_critical_xids_come_from_thresholds() -> None:
    expr = next(r["expr"] for r in _rules() if r["alert"] == "OpenComputeGPUCriticalXid")
    assert 'xid=~"48|63|64|74|79|92|94|95"' in expr
    assert thresholds.CRITICAL_XIDS == (48, 63, 64, 74, 79, 92, 94, 95)


def test_changing_a_threshold_changes_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thresholds, "GPU_TEMPERATURE_CELSIUS", 91)
    monkeypatch.setattr(thresholds, "MINER_PORT_CLOSED_FOR", "3m")
    monkeypatch.setattr(thresholds, "CRITICAL_XIDS", (79,))
    rules = {rule["alert"]: rule for rule in _rules()}
    assert rules["OpenComputeGPUTemperatureHigh"]["expr"].startswith(
        "(\n  opencompute_gpu_temperature_celsius > 91\n)\nor\n"
    )
    assert "above 91 °C" in rules["OpenComputeGPUTemperatureHigh"]["annotations"]["description"]
    assert rules["OpenComputeMinerPortClosed"]["for"] == "3m"
    assert 'xid=~"79"' in rules["OpenComputeGPUCriticalXid"]["expr"]


def test_the_grafana_base_url_is_configurable() -> None:
    groups = alerts.build_rule_groups("https://grafana.example.net/")
    urls = {rule["annotations"]["dashboard_url"] for group in groups for rule in group["rules"]}
    assert urls == {f"https://grafana.example.net/d/{uid}" for uid in uids.ALL}


def test_the_runbook_has_a_section_for_every_alert_and_no_orphans() -> None:
    """Each ``## <AlertName>`` heading is the target of that alert's runbook_url anchor."""
    headings = re.findall(r"^## (OpenCompute\w+)\s*$", RUNBOOK.read_text(encoding="utf-8"), re.M)
    rules = _rules()
    assert sorted(headings) == sorted(rule["alert"] for rule in rules)
    for rule in rules:
        # GitHub's anchor for a heading of letters only is the lower-cased heading.
        assert rule["annotations"]["runbook_url"].endswith(f"#{rule['alert'].lower()}")


def test_an_alert_definition_without_a_valid_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="severity"):
        builder.Alert(
            name="OpenComputeX",
            expr="up == 0",
            severity="page",
            summary="X.",
            description="x",
            dashboard_uid="u",
        )


def test_every_metric_used_by_alerts_and_dashboards_is_in_the_contract() -> None:
    exprs = [rule["expr"] for rule in _rules()] + list(queries.all_queries().values())
    used = {name for expr in exprs for name in re.findall(r"\b(opencompute_\w+|up)\b", expr)}
    contract = set(re.findall(r"`(opencompute_\w+)", CONTRACT.read_text(encoding="utf-8")))
    assert used - contract == {"up"}
