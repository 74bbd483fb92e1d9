"""Prometheus alerting rules as code, rendered to committed YAML by ``opencompute-exporter generate``.

One module per area returns its :class:`~alerts.builder.Alert` list; ``thresholds`` holds every
number. ``build_rule_groups()`` is the single source for the rule files and for the Kubernetes
PrometheusRule.
"""

from __future__ import annotations

from typing import Any

from alerts import chain, exporter, gpu, miner, network, validator, workload
from alerts.builder import GRAFANA_URL, RUNBOOK_URL, Alert, Area, to_yaml

AREA_MODULES = (exporter, gpu, miner, validator, network, workload, chain)


def areas() -> list[Area]:
    """Every rule group, in a fixed order."""
    return [Area(stem=module.STEM, alerts=module.alerts()) for module in AREA_MODULES]


def all_alerts() -> list[Alert]:
    """Every alert across areas; names are unique."""
    found = [alert for area in areas() for alert in area.alerts]
    names = [a.name for a in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate alert names: {duplicates}")
    return found


def build_rule_groups(grafana_url: str = GRAFANA_URL, runbook_url: str = RUNBOOK_URL) -> list[dict[str, Any]]:
    """The rule groups as Prometheus expects them under ``groups:``."""
    all_alerts()
    return [area.group(grafana_url, runbook_url) for area in areas()]


def render_files(grafana_url: str = GRAFANA_URL, runbook_url: str = RUNBOOK_URL) -> dict[str, str]:
    """``{"<area>.yml": text}``: the deterministic files under ``alerts/generated/``."""
    groups = build_rule_groups(grafana_url, runbook_url)
    return {
        f"{area.stem}.yml": to_yaml({"groups": [group]}) for area, group in zip(areas(), groups, strict=True)
    }
