"""deploy/kubernetes: core objects through kubernetes-validate --strict, CRDs checked structurally,
and the generated PrometheusRule/ConfigMaps proven equal to alerts/generated and dashboards/generated.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_tools import DEPLOY, REPO, load_yaml_documents
from helpers.generated import assert_generated_files_current

from exporters import k8s
from exporters.cli import SUBCOMMANDS

K8S = DEPLOY / "kubernetes"
GENERATED = K8S / "generated"
# A Kubernetes release kubernetes-validate bundles; bump with the cluster versions you support.
KUBERNETES_VERSION = "1.31.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
NAMESPACE = "opencompute"


def manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(GENERATED.glob("*.yaml"))


@functools.cache
def _parsed() -> tuple[dict[str, Any], ...]:
    docs = []
    for path in manifests():
        if path.name != "kustomization.yaml":
            docs.extend(load_yaml_documents(path))
    return tuple(docs)


def objects() -> list[dict[str, Any]]:
    """Every object in deploy/kubernetes (parsed once; each call gets its own copy to mutate)."""
    return copy.deepcopy(list(_parsed()))


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in objects() if o["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in of_kind(kind) if o["metadata"]["name"] == name]
    return found


def kubernetes_validate(run_tool, docs: list[dict[str, Any]], tmp_path: Path):
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return run_tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, str(path))


def test_core_objects_pass_kubernetes_validate_strict(tmp_path, run_tool):
    core = [o for o in objects() if o["kind"] not in CRD_KINDS]
    kinds = {o["kind"] for o in core}
    assert {"DaemonSet", "Deployment", "Service", "ConfigMap", "Namespace"} <= kinds
    result = kubernetes_validate(run_tool, core, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # kubernetes-validate only WARNs (exit 0) for a kind it has no schema for: a typo'd kind.
    assert "WARN" not in output and "ERROR" not in output, output
    assert output.count("passed for resource") == len(core)


def test_kubernetes_validate_as_run_here_rejects_an_unknown_field(tmp_path, run_tool):
    daemonset = named("DaemonSet", "opencompute-miner-exporter")
    daemonset["spec"]["template"]["spec"]["containers"][0]["readOnly"] = True
    result = kubernetes_validate(run_tool, [daemonset], tmp_path)
    assert result.returncode != 0 and "readOnly" in result.stdout + result.stderr


def test_every_object_lives_in_the_opencompute_namespace_with_recommended_labels():
    for o in objects():
        meta = o["metadata"]
        if o["kind"] != "Namespace":
            assert meta["namespace"] == NAMESPACE, meta["name"]
        assert meta["labels"]["app.kubernetes.io/part-of"] == "opencompute-exporters", meta["name"]


def test_kustomization_lists_every_manifest_exactly_once():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    on_disk = [p.relative_to(K8S).as_posix() for p in manifests() if p.name != "kustomization.yaml"]
    assert sorted(listed) == sorted(on_disk)
    assert len(set(listed)) == len(listed)


# --- Workloads ----------------------------------------------------------------------------------


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    return named(kind, name)["spec"]["template"]["spec"]


def container(spec: dict[str, Any]) -> dict[str, Any]:
    (c,) = spec["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def test_the_miner_exporter_is_a_daemonset_on_gpu_nodes_that_takes_no_gpu():
    spec = pod_spec("DaemonSet", "opencompute-miner-exporter")
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    c = container(spec)
    assert c["args"] == ["miner"]
    assert not any("nvidia.com/gpu" in r for r in c["resources"].values()), "must not consume a GPU"
    env = env_of(c)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["wallets"]["readOnly"] is True and mounts["host-root"]["readOnly"] is True
    assert env["OPENCOMPUTE_HOST_DISK_PATH"] == mounts["host-root"]["mountPath"]


def test_the_network_exporter_runs_two_stateless_replicas():
    deployment = named("Deployment", "opencompute-network-exporter")
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    assert all("persistentVolumeClaim" not in v and "hostPath" not in v for v in spec["volumes"])
    state = {v["name"]: v for v in spec["volumes"]}["state"]
    assert "emptyDir" in state
    env = env_of(container(spec))
    assert env["OPENCOMPUTE_STATE_SQLITE_PATH"].startswith("/var/lib/opencompute/")
    assert "wallet" not in " ".join(env).lower(), "the network exporter only reads"
    assert named("PodDisruptionBudget", "opencompute-network-exporter")["spec"]["minAvailable"] == 1


def test_the_validator_exporter_sits_beside_the_validator_with_the_computedb_read_only():
    spec = pod_spec("Deployment", "opencompute-validator-exporter")
    (term,) = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    volume = {v["name"]: v for v in spec["volumes"]}["computedb"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    c = container(spec)
    mount = {m["name"]: m for m in c["volumeMounts"]}["computedb"]
    assert mount["readOnly"] is True
    assert env_of(c)["OPENCOMPUTE_VALIDATOR_DB_PATH"].startswith(mount["mountPath"] + "/")
    assert all(m["readOnly"] for m in c["volumeMounts"] if m["name"] in ("computedb", "hotkey"))


@pytest.mark.parametrize(
    "kind,name",
    [
        ("DaemonSet", "opencompute-miner-exporter"),
        ("Deployment", "opencompute-network-exporter"),
        ("Deployment", "opencompute-validator-exporter"),
    ],
)
def test_every_exporter_pod_runs_non_root_read_only_with_no_capabilities(kind, name):
    spec = pod_spec(kind, name)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    c = container(spec)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    # Probes use the landing page: a degraded exporter must keep serving its failure metrics.
    assert c["livenessProbe"]["httpGet"]["path"] == "/" and c["readinessProbe"]["httpGet"]["path"] == "/"


def flag_envs(subcommand: str) -> set[str]:
    module = importlib.import_module(SUBCOMMANDS[subcommand][0])
    return {f.env for f in module.flags().flags}


@pytest.mark.parametrize(
    "kind,name",
    [
        ("DaemonSet", "opencompute-miner-exporter"),
        ("Deployment", "opencompute-network-exporter"),
        ("Deployment", "opencompute-validator-exporter"),
    ],
)
def test_every_opencompute_variable_set_on_a_pod_is_a_flag_of_its_subcommand(kind, name):
    c = container(pod_spec(kind, name))
    (subcommand,) = c["args"]
    ours = {e for e in env_of(c) if e.startswith("OPENCOMPUTE_")}
    assert ours and not ours - flag_envs(subcommand), sorted(ours - flag_envs(subcommand))


# --- ServiceMonitors (structural: no schema for CRDs offline) -------------------------------------


def prometheus_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_each_service_monitor_selects_a_service_port_and_matches_the_prometheus_job():
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    jobs = prometheus_jobs()
    monitors = of_kind("ServiceMonitor")
    assert len(monitors) == 3
    for sm in monitors:
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        selector = sm["spec"]["selector"]["matchLabels"]
        matching = [s for s in services.values() if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matching) == 1, sm["metadata"]["name"]
        port_names = {p["name"] for p in matching[0]["spec"]["ports"]}
        (endpoint,) = sm["spec"]["endpoints"]
        assert endpoint["port"] in port_names
        job = next(r["replacement"] for r in endpoint["relabelings"] if r.get("targetLabel") == "job")
        assert endpoint["interval"] == jobs[job]["scrape_interval"]
        assert endpoint["scrapeTimeout"] == jobs[job]["scrape_timeout"]
        targets = {r.get("targetLabel") for r in endpoint["relabelings"]}
        assert {"job", "component", "host"} <= targets


def test_services_route_to_the_pods_they_select():
    workloads = of_kind("DaemonSet") + of_kind("Deployment")
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        (workload,) = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        ports = {
            p["name"]: p["containerPort"] for p in container(workload["spec"]["template"]["spec"])["ports"]
        }
        for port in service["spec"]["ports"]:
            assert ports[port["targetPort"]] == port["port"]


# --- Generated: one source with alerts/generated and dashboards/generated -----------------------


def test_generated_files_are_exactly_what_the_builders_produce_now():
    import alerts
    import dashboards

    rendered = k8s.render(alerts.build_rule_groups(), dashboards.build_all())
    assert_generated_files_current(rendered, GENERATED, "*.yaml")


def test_prometheus_rule_groups_equal_the_alerts_generated_rule_files():
    (rule,) = of_kind("PrometheusRule")
    from_files = []
    for path in sorted((REPO / "alerts" / "generated").glob("*.yml")):
        from_files.extend(yaml.safe_load(path.read_text())["groups"])
    assert from_files, "alerts/generated/*.yml is missing"
    by_name = {g["name"]: g for g in rule["spec"]["groups"]}
    assert sorted(by_name) == sorted(g["name"] for g in from_files)
    for group in from_files:
        assert by_name[group["name"]] == group


def test_the_prometheus_rule_passes_promtool(tmp_path, run_tool):
    (rule,) = of_kind("PrometheusRule")
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run_tool("promtool", "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"SUCCESS: [1-9]\d* rules found", result.stdout)


def test_dashboard_configmaps_hold_the_generated_json_byte_for_byte():
    files = {p.name: p.read_text() for p in (REPO / "dashboards" / "generated").glob("*.json")}
    assert files, "dashboards/generated/*.json is missing"
    maps = of_kind("ConfigMap")
    assert len(maps) == len(files)
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = cm["data"].items()
        assert text == files[key], key
        assert cm["metadata"]["name"] == f"{json.loads(text)['uid']}-dashboard"


# --- The builders themselves --------------------------------------------------------------------


def test_build_prometheus_rule_refuses_duplicate_group_names():
    with pytest.raises(ValueError, match="unique"):
        k8s.build_prometheus_rule([{"name": "a", "rules": []}, {"name": "a", "rules": []}])


def test_build_dashboard_configmaps_refuses_a_uid_that_disagrees_with_its_key():
    with pytest.raises(ValueError, match="has uid"):
        k8s.build_dashboard_configmaps({"x": {"uid": "y", "title": "Y"}})


def test_build_dashboard_configmaps_refuses_a_dashboard_over_the_configmap_limit():
    huge = {"uid": "big", "title": "Big", "description": "x" * k8s.CONFIGMAP_MAX_BYTES}
    with pytest.raises(ValueError, match="over the ConfigMap limit"):
        k8s.build_dashboard_configmaps({"big": huge})


def test_rendered_yaml_round_trips_to_the_built_objects():
    groups = [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0\nand on() vector(1)\n", "for": "5m"}]}]
    boards = {"u": {"uid": "u", "title": "T", "panels": []}}
    files = k8s.render(groups, boards)
    (rule,) = yaml.safe_load_all(files[k8s.PROMETHEUS_RULE_FILE])
    assert rule == k8s.build_prometheus_rule(groups)
    assert "expr: |" in files[k8s.PROMETHEUS_RULE_FILE], "multi-line PromQL stays readable"
    assert list(yaml.safe_load_all(files[k8s.DASHBOARDS_FILE])) == k8s.build_dashboard_configmaps(boards)
