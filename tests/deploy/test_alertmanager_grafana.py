"""deploy/alertmanager (amtool) and deploy/grafana provisioning (parsed, cross-checked with dashboards)."""

from __future__ import annotations

import json

import yaml
from deploy_tools import DEPLOY, REPO

ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "opencompute.yml"
PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards" / "opencompute.yml"
GENERATED_DASHBOARDS = REPO / "dashboards" / "generated"


def test_amtool_accepts_the_alertmanager_config(run_tool):
    assert ALERTMANAGER.is_file(), f"{ALERTMANAGER} is missing (written by the alerts work)"
    result = run_tool("amtool", "check-config", str(ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_amtool_as_run_here_rejects_a_route_to_an_unknown_receiver(tmp_path, run_tool):
    config = yaml.safe_load(ALERTMANAGER.read_text())
    config["route"]["receiver"] = "no-such-receiver"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    result = run_tool("amtool", "check-config", str(broken))
    assert result.returncode != 0


def datasource() -> dict:
    config = yaml.safe_load(DATASOURCES.read_text())
    assert config["apiVersion"] == 1
    (ds,) = config["datasources"]
    return ds


def test_the_provisioned_datasource_is_the_default_prometheus_with_a_fixed_uid():
    ds = datasource()
    assert ds["type"] == "prometheus"
    assert ds["uid"] == "opencompute-prometheus"
    assert ds["isDefault"] is True
    assert ds["url"].startswith("http")


def dashboards() -> dict[str, dict]:
    files = sorted(GENERATED_DASHBOARDS.glob("*.json"))
    assert files, "dashboards/generated/*.json is missing: run `opencompute-exporter generate`"
    return {f.name: json.loads(f.read_text()) for f in files}


def walk_datasources(node: object) -> list[object]:
    """Every ``datasource`` value anywhere in a dashboard (panels, targets, variables)."""
    found: list[object] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.append(value)
            found.extend(walk_datasources(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(walk_datasources(item))
    return found


def test_every_dashboard_resolves_to_the_provisioned_datasource():
    ds = datasource()
    for name, board in dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        var = variables["datasource"]
        assert var["type"] == "datasource" and var["query"] == ds["type"], name
        for ref in walk_datasources(board):
            if ref is None:
                continue
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            # Either the variable (resolves to the default: ours) or our fixed uid, never another.
            assert uid in ("${datasource}", "$datasource", ds["uid"]), (name, ref)
            if isinstance(ref, dict) and "type" in ref:
                assert ref["type"] == ds["type"], (name, ref)


def test_the_dashboard_provider_loads_the_path_the_generated_dashboards_are_mounted_at():
    config = yaml.safe_load(PROVIDERS.read_text())
    assert config["apiVersion"] == 1
    (provider,) = config["providers"]
    path = provider["options"]["path"]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    mounts = dict(
        m.rsplit(":", 2)[:2] if m.count(":") == 2 else m.split(":")
        for m in compose["services"]["grafana"]["volumes"]
    )
    assert mounts["../../dashboards/generated"] == path
    assert mounts["../grafana/provisioning"] == "/etc/grafana/provisioning"
    assert dashboards(), "the provider would load nothing"
