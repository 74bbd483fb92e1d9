"""deploy/prometheus and deploy/compose/prometheus.yml: promtool-checked with the real generated rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from deploy_tools import DEPLOY, REPO

from alerts.thresholds import EXPORTER_JOB_REGEX

CONFIGS = [DEPLOY / "prometheus" / "prometheus.yml", DEPLOY / "compose" / "prometheus.yml"]
HA = DEPLOY / "prometheus" / "prometheus-ha.yml"
REMOTE_WRITE = DEPLOY / "prometheus" / "prometheus-remote-write.yml"
HOST_CONFIGS = [CONFIGS[0], HA, REMOTE_WRITE]
RULES_GLOB = "/etc/prometheus/opencompute/*.yml"
GENERATED_RULES = REPO / "alerts" / "generated"

# job -> (exporter port, the longest a scrape may take: see the comments in prometheus.yml)
JOBS = {
    "opencompute-miner": 9927,
    "opencompute-validator": 9928,
    "opencompute-network": 9929,
}


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match.group(1)) * units[match.group(2)]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def jobs_of(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def with_real_rules(config_path: Path, tmp_path: Path) -> Path:
    """A copy whose rule_files point at alerts/generated/*.yml, so promtool loads the real rules."""
    rule_files = sorted(GENERATED_RULES.glob("*.yml"))
    assert rule_files, "alerts/generated/*.yml is missing: run `opencompute-exporter generate`"
    config = load(config_path)
    assert config["rule_files"] == [RULES_GLOB]
    config["rule_files"] = [str(GENERATED_RULES / "*.yml")]
    copy = tmp_path / config_path.name
    copy.write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


@pytest.mark.parametrize(
    "config_path", [*CONFIGS, HA, REMOTE_WRITE], ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_promtool_accepts_the_config_with_the_generated_alert_rules(config_path, tmp_path, run_tool):
    copy = with_real_rules(config_path, tmp_path)
    result = run_tool("promtool", "check", "config", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", result.stdout + result.stderr)]
    assert len(found) == len(list(GENERATED_RULES.glob("*.yml"))) and all(n > 0 for n in found), result.stdout


def test_promtool_as_run_here_rejects_a_broken_scrape_config(tmp_path, run_tool):
    copy = with_real_rules(CONFIGS[0], tmp_path)
    config = load(copy)
    jobs_of(config)["opencompute-miner"]["scrape_timeout"] = "1m"  # longer than its 15 s interval
    copy.write_text(yaml.safe_dump(config))
    result = run_tool("promtool", "check", "config", str(copy))
    assert result.returncode != 0
    assert "scrape timeout greater than scrape interval" in result.stdout + result.stderr


@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.parent.name)
def test_one_job_per_exporter_with_its_port_component_label_and_a_timeout_below_its_interval(config_path):
    jobs = jobs_of(load(config_path))
    for name, port in JOBS.items():
        job = jobs[name]
        assert re.fullmatch(EXPORTER_JOB_REGEX, name), "the alerts would not see this job"
        interval, timeout = seconds(job["scrape_interval"]), seconds(job["scrape_timeout"])
        assert timeout < interval
        for group in job["static_configs"]:
            assert all(t.endswith(f":{port}") for t in group["targets"]), group
            assert group["labels"]["component"] == name.removeprefix("opencompute-")


def test_timeouts_are_sized_to_each_exporter():
    jobs = jobs_of(load(CONFIGS[0]))
    timeout = {name: seconds(jobs[name]["scrape_timeout"]) for name in JOBS}
    interval = {name: seconds(jobs[name]["scrape_interval"]) for name in JOBS}
    # The miner is scraped most often (GPU metrics move fast); the network exporter serves a
    # cached snapshot, so neither needs the validator's SQLite-sized timeout.
    assert interval["opencompute-miner"] == min(interval.values())
    assert timeout["opencompute-validator"] == max(timeout.values())
    assert timeout["opencompute-network"] <= 10


def test_both_configs_scrape_the_same_jobs_at_the_same_rates():
    host, compose = (jobs_of(load(p)) for p in CONFIGS)
    for name in JOBS:
        for key in ("scrape_interval", "scrape_timeout"):
            assert host[name][key] == compose[name][key], (name, key)


def relabel(rule: dict, labels: dict[str, str]) -> dict[str, str]:
    """Prometheus' `replace` action (fully anchored RE2, which this regex shares with Python)."""
    value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
    match = re.fullmatch(rule["regex"], value)
    if match:
        labels = {**labels, rule["target_label"]: match.expand(rule["replacement"].replace("$1", r"\1"))}
    return labels


@pytest.mark.parametrize(
    "labels,expected",
    [
        ({"__address__": "miner-1.example.net:9927"}, "miner-1.example.net"),
        ({"__address__": "10.0.0.7:9928"}, "10.0.0.7"),
        ({"__address__": "[2001:db8::7]:9929"}, "2001:db8::7"),
        ({"__address__": "10.0.0.7:9927", "host": "gpu-box-2"}, "gpu-box-2"),
    ],
)
def test_host_label_comes_from_the_address_unless_a_static_label_sets_it(labels, expected):
    job = jobs_of(load(CONFIGS[0]))["opencompute-miner"]
    (rule,) = job["relabel_configs"]
    assert relabel(rule, labels)["host"] == expected


def test_alerts_go_to_alertmanager_without_the_ha_replica_label():
    config = load(CONFIGS[0])
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["localhost:9093"]
    for path in HOST_CONFIGS:
        rules = load(path)["alerting"]["alert_relabel_configs"]
        assert {"regex": "replica", "action": "labeldrop"} in rules, path.name


def test_scale_out_is_real_config_not_commented_blocks():
    for path in HOST_CONFIGS:
        text = path.read_text()
        assert not re.search(r"^\s*#\s*(remote_write|replica):", text, re.M), path.name


def test_the_ha_and_remote_write_configs_scrape_exactly_what_the_single_server_does():
    single = load(CONFIGS[0])
    for path in (HA, REMOTE_WRITE):
        config = load(path)
        assert config["scrape_configs"] == single["scrape_configs"], (
            f"{path.name} drifted from prometheus.yml"
        )
        assert config["rule_files"] == single["rule_files"]
        assert config["global"]["scrape_interval"] == single["global"]["scrape_interval"]


def test_each_ha_replica_gets_its_own_replica_label_and_alerts_every_alertmanager():
    config = load(HA)
    assert config["global"]["external_labels"] == {
        "cluster": "opencompute",
        "replica": "${PROMETHEUS_REPLICA}",
    }
    assert "--enable-feature=expand-external-labels" in HA.read_text()
    (targets,) = [group["targets"] for group in config["alerting"]["alertmanagers"][0]["static_configs"]]
    assert len(targets) == 2 and "remote_write" not in config


def test_remote_write_has_one_central_store_and_documents_each_backend():
    config = load(REMOTE_WRITE)
    (write,) = config["remote_write"]
    assert write["url"].endswith("/api/v1/write") and "queue_config" in write
    text = REMOTE_WRITE.read_text()
    for backend in ("--web.enable-remote-write-receiver", "Mimir", "Thanos Receive", "VictoriaMetrics"):
        assert backend in text
    deploy_doc = (REPO / "docs" / "deploy.md").read_text()
    for needle in ("/api/v1/push", "X-Scope-OrgID", "/api/v1/receive", "dedup.minScrapeInterval"):
        assert needle in deploy_doc, needle


def test_the_alertmanager_cluster_flags_are_real_alertmanager_flags(tool):
    import subprocess

    text = (DEPLOY / "alertmanager" / "cluster.default").read_text()
    (args,) = re.findall(r'^ARGS="(.*)"$', text, re.M)
    flags = {arg.split("=", 1)[0] for arg in args.split()}
    assert {"--cluster.listen-address", "--cluster.peer", "--cluster.advertise-address"} <= flags
    binary = tool("amtool").replace("amtool", "prometheus-alertmanager")
    proc = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    help_text = proc.stdout + proc.stderr
    assert all(flag in help_text for flag in flags), flags


def test_compose_config_targets_the_compose_services():
    config = load(CONFIGS[1])
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = set(compose["services"])
    for name in JOBS:
        for group in jobs_of(config)[name]["static_configs"]:
            for target in group["targets"]:
                assert target.rsplit(":", 1)[0] in services, target
    (am,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am.split(":")[0] in services
