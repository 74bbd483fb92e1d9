"""Our Grafana preferences on top of grafanalib, in one place.

grafanalib's ``core`` knows how to build any dashboard; this module says how ours look: a
``datasource`` variable that every panel and target uses (no hard-coded datasource uids),
``job``/``instance``/``hotkey`` query variables that refresh on time-range change, modern panel
types only (timeseries, stat, table, bargauge, state-timeline), a unit and a description on
every panel, rows laid out by :func:`layout` rather than hand-placed grid positions, stable
uids, and JSON with sorted keys so the committed output diffs cleanly.

Panel factories take the unit positionally and the description as a required keyword, so a
panel without either does not type-check, and a test checks the rendered JSON as well.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import attr
from grafanalib import core
from grafanalib._gen import DashboardEncoder

DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
TAG = "opencompute"
REFRESH = "30s"
DEFAULT_HEIGHT = 8
GRID_WIDTH = 24

# Grafana unit ids our panels may use (a subset of Grafana's list; the test checks against it).
UNITS = frozenset(
    {"s", "bytes", "celsius", "watt", "hertz", "percentunit", "short", "none", "cps", "bool_yes_no"}
)

UP_DOWN: list[dict[str, Any]] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "Down", "color": "red", "index": 0},
            "1": {"text": "Up", "color": "green", "index": 1},
        },
    }
]
YES_NO: list[dict[str, Any]] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "No", "color": "text", "index": 0},
            "1": {"text": "Yes", "color": "green", "index": 1},
        },
    }
]
OPEN_CLOSED: list[dict[str, Any]] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "Closed", "color": "red", "index": 0},
            "1": {"text": "Open", "color": "green", "index": 1},
        },
    }
]
ACTIVE: list[dict[str, Any]] = [
    {
        "type": "value",
        "options": {
            "0": {"text": "-", "color": "transparent", "index": 0},
            "1": {"text": "Active", "color": "orange", "index": 1},
        },
    }
]


def steps(*pairs: tuple[str, float | None]) -> list[dict[str, Any]]:
    """Threshold steps ``("green", None), ("red", 80)`` -> Grafana's step list (first is the base)."""
    return [{"color": color, "value": value} for color, value in pairs]


# --- Variables --------------------------------------------------------------------------------


def datasource_variable() -> core.Template:
    """The one ``datasource`` variable (dashboard-linter: template-datasource-rule)."""
    return core.Template(
        name="datasource", label="Data Source", query="prometheus", type="datasource", default=None
    )


def query_variable(name: str, label: str, query: str, *, multi: bool = True) -> core.Template:
    """A Prometheus query variable that refreshes on time-range change and offers "All"."""
    return core.Template(
        name=name,
        label=label,
        query=query,
        dataSource=DATASOURCE,
        refresh=core.REFRESH_ON_TIME_RANGE_CHANGE,
        multi=multi,
        includeAll=True,
        allValue=".+",
        sort=core.SORT_ALPHA_ASC,
    )


def job_variable(query: str) -> core.Template:
    """``$job``: the exporter scrape job(s)."""
    return query_variable("job", "job", query)


def instance_variable(query: str) -> core.Template:
    """``$instance``: the exporter target(s), filtered by ``$job`` (and ``$hotkey`` where it exists)."""
    return query_variable("instance", "instance", query)


def hotkey_variable(query: str) -> core.Template:
    """``$hotkey``: a subnet hotkey (ss58); on miner/validator dashboards it narrows ``$instance``."""
    return query_variable("hotkey", "hotkey", query)


# --- Targets and panels -------------------------------------------------------------------------


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> core.Target:
    """One PromQL query against ``$datasource``; refIds are assigned by the panel factories."""
    return core.Target(
        expr=expr,
        legendFormat=legend,
        instant=instant,
        format=core.TABLE_TARGET_FORMAT if table else core.TIME_SERIES_TARGET_FORMAT,
        intervalFactor=1,
        datasource=DATASOURCE,
    )


def _with_ref_ids(targets: Sequence[core.Target]) -> list[core.Target]:
    return [attr.evolve(t, refId=string.ascii_uppercase[i]) for i, t in enumerate(targets)]


def _field_config(
    unit: str,
    *,
    mappings: list[dict[str, Any]] | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r} is not one of {sorted(UNITS)}")
    defaults: dict[str, Any] = {"unit": unit}
    if mappings is not None:
        defaults["mappings"] = mappings
    defaults["thresholds"] = {"mode": "absolute", "steps": thresholds or steps(("green", None))}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    config: dict[str, Any] = {"defaults": defaults}
    if overrides is not None:
        config["overrides"] = overrides
    return config


def _common(title: str, description: str, targets: Sequence[core.Target]) -> dict[str, Any]:
    if not description.strip():
        raise ValueError(f"panel {title!r} needs a description")
    return {
        "title": title,
        "description": description,
        "dataSource": DATASOURCE,
        "targets": _with_ref_ids(targets),
        "maxDataPoints": None,
        "editable": False,
    }


def timeseries(
    title: str,
    unit: str,
    targets: Sequence[core.Target],
    *,
    description: str,
    min_value: float | None = None,
    max_value: float | None = None,
    stack: bool = False,
    thresholds: list[dict[str, Any]] | None = None,
) -> core.TimeSeries:
    """A timeseries panel; thresholds, when given, are drawn as dashed lines."""
    config = _field_config(unit, thresholds=thresholds, min_value=min_value, max_value=max_value)
    config["defaults"]["custom"] = {
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "fillOpacity": 20 if stack else 0,
    }
    return core.TimeSeries(
        **_common(title, description, targets),
        unit=unit,
        legendDisplayMode="table",
        legendPlacement="right" if len(targets) > 1 else "bottom",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        tooltipSort="desc",
        stacking={"mode": "normal", "group": "A"} if stack else {},
        fillOpacity=20 if stack else 0,
        extraJson={"fieldConfig": config},
    )


def stat(
    title: str,
    unit: str,
    targets: Sequence[core.Target],
    *,
    description: str,
    mappings: list[dict[str, Any]] | None = None,
    thresholds: list[dict[str, Any]] | None = None,
    text_mode: str = "auto",
) -> core.Stat:
    """A stat panel showing the last value (not the mean over the range, grafanalib's default)."""
    return core.Stat(
        **_common(title, description, targets),
        format=unit,
        noValue="No data",
        reduceCalc="lastNotNull",
        graphMode="none",
        colorMode="value",
        textMode=text_mode,
        mappings=mappings or [],
        extraJson={"fieldConfig": _field_config(unit, mappings=mappings or [], thresholds=thresholds)},
    )


def table(
    title: str,
    unit: str,
    targets: Sequence[core.Target],
    *,
    description: str,
    columns: Mapping[str, tuple[str, str]] | None = None,
    hide: Sequence[str] = ("Time", "__name__", "job"),
) -> core.Table:
    """An instant table. ``columns`` maps a refId to (column title, unit) for merged values.

    Several targets are merged on their common labels (Grafana's "merge" transformation), so
    each query should aggregate to the same label set.
    """
    transformations: list[dict[str, Any]] = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    rename = {f"Value #{ref}": name for ref, (name, _) in (columns or {}).items()}
    transformations.append(
        {
            "id": "organize",
            "options": {"excludeByName": {name: True for name in hide}, "renameByName": rename},
        }
    )
    overrides = [
        {
            "matcher": {"id": "byName", "options": name},
            "properties": [{"id": "unit", "value": column_unit}],
        }
        for name, column_unit in (columns or {}).values()
    ]
    for name, column_unit in (columns or {}).values():
        if column_unit not in UNITS:
            raise ValueError(f"column {name!r}: unit {column_unit!r} is not one of {sorted(UNITS)}")
    return core.Table(
        **_common(title, description, targets),
        unit=unit,
        filterable=True,
        transformations=transformations,
        extraJson={"fieldConfig": _field_config(unit, overrides=overrides)},
    )


def bargauge(
    title: str,
    unit: str,
    targets: Sequence[core.Target],
    *,
    description: str,
    min_value: float = 0,
    max_value: float | None = None,
    thresholds: list[dict[str, Any]] | None = None,
) -> core.BarGauge:
    """A horizontal bar gauge of each series' last value (modern ``fieldConfig`` options)."""
    return core.BarGauge(
        **_common(title, description, targets),
        format=unit,
        calc="lastNotNull",
        displayMode=core.GAUGE_DISPLAY_MODE_GRADIENT,
        min=min_value,
        max=max_value,
        extraJson={
            "fieldConfig": _field_config(
                unit, thresholds=thresholds, min_value=min_value, max_value=max_value
            ),
            "options": {
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                "showUnfilled": True,
            },
        },
    )


def state_timeline(
    title: str,
    unit: str,
    targets: Sequence[core.Target],
    *,
    description: str,
    mappings: list[dict[str, Any]] | None = None,
) -> core.StateTimeline:
    """A state timeline for 0/1 states (``mappings`` turn them into words and colours)."""
    return core.StateTimeline(
        **_common(title, description, targets),
        mappings=mappings or UP_DOWN,
        showValue="never",
        extraJson={"fieldConfig": _field_config(unit, mappings=mappings or UP_DOWN)},
    )


# --- Layout and dashboard -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """A titled row of panels side by side; ``widths`` defaults to an even split of 24 columns."""

    title: str
    panels: Sequence[core.Panel]
    height: int = DEFAULT_HEIGHT
    widths: Sequence[int] | None = None

    def panel_widths(self) -> list[int]:
        if self.widths is not None:
            if len(self.widths) != len(self.panels) or sum(self.widths) > GRID_WIDTH:
                raise ValueError(f"row {self.title!r}: widths {list(self.widths)} do not fit its panels")
            return list(self.widths)
        each, rest = divmod(GRID_WIDTH, len(self.panels))
        return [each + (1 if i < rest else 0) for i in range(len(self.panels))]


def layout(rows: Sequence[Row]) -> list[core.Panel]:
    """Place rows top to bottom: a row header, then its panels left to right."""
    panels: list[core.Panel] = []
    y = 0
    for row in rows:
        panels.append(core.RowPanel(title=row.title, gridPos=core.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
        y += 1
        x = 0
        for panel, width in zip(row.panels, row.panel_widths(), strict=True):
            panels.append(attr.evolve(panel, gridPos=core.GridPos(h=row.height, w=width, x=x, y=y)))
            x += width
        y += row.height
    return panels


def dashboard(
    *,
    uid: str,
    title: str,
    description: str,
    variables: Sequence[core.Template],
    rows: Sequence[Row],
) -> core.Dashboard:
    """A dashboard in house style: datasource variable first, fixed panel ids, tag links."""
    return core.Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=[TAG],
        timezone="browser",
        refresh=REFRESH,
        editable=False,
        graphTooltip=core.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        time=core.Time("now-6h", "now"),
        templating=core.Templating(list=[datasource_variable(), *variables]),
        links=[
            core.DashboardLink(
                title="OpenCompute dashboards",
                type="dashboards",
                tags=[TAG],
                asDropdown=True,
                includeVars=False,
                keepTime=True,
            )
        ],
        panels=layout(rows),
    ).auto_panel_ids()


def render(board: core.Dashboard) -> dict[str, Any]:
    """The dashboard as plain JSON data (what Grafana imports)."""
    return json.loads(json.dumps(board.to_json_data(), cls=DashboardEncoder))


def to_json(data: Mapping[str, Any]) -> str:
    """Deterministic text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
