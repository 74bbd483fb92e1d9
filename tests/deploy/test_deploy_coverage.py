"""Every file under deploy/ is produced or checked by a test: a new file without a check fails here."""

from __future__ import annotations

from deploy_tools import DEPLOY, REPO

# glob under deploy/ -> the test module that checks (or generates and diffs) those files.
CHECKED_BY = {
    "systemd/*.service": "test_systemd_units (systemd-analyze verify + security)",
    "systemd/*.timer": "test_systemd_units (systemd-analyze verify)",
    "systemd/drop-ins/*.conf": "test_systemd_units (verified as <unit>.d/ drop-ins)",
    "systemd/default/opencompute-*": "test_systemd_units (names real flags, values parse)",
    "systemd/sysusers.d/*.conf": "test_systemd_units (systemd-sysusers --dry-run)",
    "prometheus/prometheus*.yml": "test_prometheus_config (promtool check config; same jobs in all)",
    "compose/prometheus.yml": "test_prometheus_config (promtool check config)",
    "compose/compose.yaml": "test_compose_and_dockerfile (check-jsonschema compose-spec)",
    "alertmanager/alertmanager.yml": "test_alertmanager_grafana (amtool check-config)",
    "alertmanager/cluster.default": "test_prometheus_config (flags exist in prometheus-alertmanager)",
    "grafana/provisioning/datasources/*.yml": "test_alertmanager_grafana (parsed, uid vs dashboards)",
    "grafana/provisioning/dashboards/*.yml": "test_alertmanager_grafana (parsed, path vs mounts)",
    "kubernetes/*.yaml": "test_kubernetes_manifests (kubernetes-validate --strict, CRDs structurally)",
    "kubernetes/generated/*.yaml": "test_kubernetes_manifests (== k8s.render(); promtool; byte-equal JSON)",
}
ROOT_FILES = {"Dockerfile", ".dockerignore"}  # test_compose_and_dockerfile


def test_every_file_under_deploy_is_covered_by_exactly_one_check():
    files = sorted(p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file())
    covered = {pattern: sorted(DEPLOY.glob(pattern)) for pattern in CHECKED_BY}
    for rel in files:
        matches = [pattern for pattern, paths in covered.items() if DEPLOY / rel in paths]
        assert len(matches) == 1, f"deploy/{rel} is checked by {matches or 'no test'}"


def test_every_declared_check_has_files_to_check():
    for pattern in CHECKED_BY:
        assert list(DEPLOY.glob(pattern)), f"nothing matches deploy/{pattern}"
    for name in ROOT_FILES:
        assert (REPO / name).is_file(), name
