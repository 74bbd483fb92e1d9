"""Grafana dashboards as code (grafanalib), rendered to committed JSON by ``opencompute-exporter generate``.

One module per dashboard, each with ``UID`` and ``build()``; ``house_style`` holds our
defaults and ``queries`` every PromQL expression. grafanalib is imported only inside this
package, and only when a dashboard is built, so ``exporters.dashboard_uids`` stays cheap to import.
"""

from __future__ import annotations

import importlib
from typing import Any

MODULES: tuple[str, ...] = (
    "dashboards.miner_gpus",
    "dashboards.validator_pog",
    "dashboards.network",
    "dashboards.exporter_health",
    "dashboards.subnet_chain",
)


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana JSON data, keyed by stable uid: the source for files and ConfigMaps."""
    from dashboards.house_style import render

    boards: dict[str, dict[str, Any]] = {}
    for name in MODULES:
        module = importlib.import_module(name)
        data = render(module.build())
        if data["uid"] in boards:
            raise ValueError(f"duplicate dashboard uid {data['uid']!r} in {name}")
        boards[data["uid"]] = data
    return boards


def render_files(boards: dict[str, dict[str, Any]] | None = None) -> dict[str, str]:
    """``{"<uid>.json": text}``: the deterministic files under ``dashboards/generated/``."""
    from dashboards.house_style import to_json

    boards = build_all() if boards is None else boards
    return {f"{uid}.json": to_json(data) for uid, data in sorted(boards.items())}
