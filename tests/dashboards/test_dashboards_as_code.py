"""The generated dashboards: committed output is current, and every panel follows the house style.

These rules mirror grafana/dashboard-linter's (panel title/description/units, templated
datasource, job/instance matchers, ``$__rate_interval``) plus ours (queries only from
``dashboards/queries.py``, stable uids, modern panel types).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers.generated import assert_generated_files_current

import dashboards
from dashboards import house_style, queries
from exporters import dashboard_uids as uids

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "dashboards" / "generated"
MODERN_TYPES = {"timeseries", "stat", "table", "bargauge", "state-timeline"}
RANGE_FUNCTIONS = re.compile(r"\b(rate|irate|increase|delta|deriv|\w+_over_time)\(")


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return dashboards.build_all()


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def _all_panels(boards: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(uid, panel) for uid, board in boards.items() for panel in _panels(board)]


def test_committed_dashboard_json_is_what_the_code_generates() -> None:
    assert_generated_files_current(dashboards.render_files(), GENERATED, "*.json")


def test_rendering_twice_gives_identical_bytes() -> None:
    assert dashboards.render_files() == dashboards.render_files()


def test_json_files_have_sorted_keys_and_a_trailing_newline() -> None:
    for path in GENERATED.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_dashboards_have_the_stable_uids_and_titles(boards: dict[str, dict[str, Any]]) -> None:
    assert sorted(boards) == sorted(uids.ALL)
    assert set(uids.ALL) == {
        "opencompute-miner-gpus",
        "opencompute-validator-pog",
        "opencompute-network",
        "opencompute-exporter-health",
        "opencompute-subnet-chain",
    }
    for uid, board in boards.items():
        assert board["uid"] == uid
        assert len(uid) <= 40  # Grafana's uid limit
        assert board["title"].startswith("OpenCompute / ")
        assert board["editable"] is False
        assert "opencompute" in board["tags"]


def test_panel_ids_are_unique_and_fixed(boards: dict[str, dict[str, Any]]) -> None:
    for board in boards.values():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1))


def test_panels_fit_the_grid_without_overlapping(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, (uid, panel["title"])
            area = {
                (x, y)
                for x in range(pos["x"], pos["x"] + pos["w"])
                for y in range(pos["y"], pos["y"] + pos["h"])
            }
            assert not cells & area, f"{uid}: panel {panel['title']!r} overlaps another"
            cells |= area


def test_every_panel_has_a_title_a_description_and_a_known_unit(boards: dict[str, dict[str, Any]]) -> None:
    missing = []
    for uid, panel in _all_panels(boards):
        unit = panel["fieldConfig"]["defaults"].get("unit")
        if not panel.get("title") or not (panel.get("description") or "").strip():
            missing.append(f"{uid} / {panel.get('title')}: title or description")
        if unit not in house_style.UNITS:
            missing.append(f"{uid} / {panel['title']}: unit {unit!r}")
    assert not missing, "\n".join(missing)


def test_only_modern_panel_types_are_used(boards: dict[str, dict[str, Any]]) -> None:
    types = {panel["type"] for _, panel in _all_panels(boards)}
    assert types <= MODERN_TYPES
    assert types == MODERN_TYPES  # and each of them is in use somewhere


def test_every_target_expression_is_defined_in_queries_module(boards: dict[str, dict[str, Any]]) -> None:
    known = set(queries.all_queries().values())
    strays = [
        f"{uid} / {panel['title']}: {target['expr']}"
        for uid, panel in _all_panels(boards)
        for target in panel["targets"]
        if target["expr"] not in known
    ]
    assert not strays, "PromQL outside dashboards/queries.py:\n" + "\n".join(strays)


def test_every_panel_has_a_target(boards: dict[str, dict[str, Any]]) -> None:
    empty = [f"{uid} / {panel['title']}" for uid, panel in _all_panels(boards) if not panel["targets"]]
    assert not empty


def test_panels_and_targets_use_the_datasource_variable(boards: dict[str, dict[str, Any]]) -> None:
    expected = {"type": "prometheus", "uid": "${datasource}"}
    for uid, panel in _all_panels(boards):
        assert panel["datasource"] == expected, (uid, panel["title"])
        for target in panel["targets"]:
            assert target["datasource"] == expected, (uid, panel["title"])


def test_every_target_selects_job_and_instance(boards: dict[str, dict[str, Any]]) -> None:
    for uid, panel in _all_panels(boards):
        for target in panel["targets"]:
            assert 'job=~"$job"' in target["expr"], (uid, panel["title"])
            assert 'instance=~"$instance"' in target["expr"], (uid, panel["title"])


def test_rates_and_increases_use_the_rate_interval_variable(boards: dict[str, dict[str, Any]]) -> None:
    for uid, panel in _all_panels(boards):
        for target in panel["targets"]:
            expr = target["expr"]
            if RANGE_FUNCTIONS.search(expr):
                ranges = re.findall(r"\[([^\]]+)\]", expr)
                assert ranges and all(r == "$__rate_interval" for r in ranges), (uid, panel["title"], expr)


def test_ref_ids_are_unique_within_a_panel(boards: dict[str, dict[str, Any]]) -> None:
    for uid, panel in _all_panels(boards):
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), (uid, panel["title"])


def test_dashboards_offer_datasource_job_and_instance_variables(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert board["templating"]["list"][0]["name"] == "datasource"
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["label"] == "Data Source"
        for name in ("job", "instance"):
            assert variables[name]["type"] == "query"
            assert variables[name]["datasource"] == house_style.DATASOURCE
            assert variables[name]["refresh"] == 2  # on time-range change
        if uid != uids.EXPORTER_HEALTH:
            assert "hotkey" in variables, uid


def test_miner_and_validator_hotkey_narrows_the_instance_list(boards: dict[str, dict[str, Any]]) -> None:
    for uid in (uids.MINER_GPUS, uids.VALIDATOR_POG):
        variables = {v["name"]: v for v in boards[uid]["templating"]["list"]}
        assert 'hotkey=~"$hotkey"' in variables["instance"]["query"]
        order = [v["name"] for v in boards[uid]["templating"]["list"]]
        assert order.index("hotkey") < order.index("instance")


def test_a_panel_without_a_description_is_refused() -> None:
    with pytest.raises(ValueError, match="description"):
        house_style.stat("Nothing", "short", [house_style.target("up")], description=" ")


def test_a_panel_with_an_unknown_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        house_style.timeseries("Bad", "percent-ish", [house_style.target("up")], description="x")


def test_grafanalib_is_imported_only_inside_the_dashboards_package() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for folder in ("exporters", "alerts")
        for path in (REPO / folder).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+grafanalib", path.read_text(encoding="utf-8"), re.M)
    ]
    assert not offenders
