"""The package's shape: shared rules in one place, no import cycles, no reaching across exporters."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("exporters", "alerts", "dashboards")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, known: dict[str, Path], *, lazy: bool) -> set[str]:
    """Modules of ours that ``path`` imports (at module level, or anywhere with ``lazy``)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if lazy else iter(tree.body)
    deps: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                deps.add(candidate if candidate in known else node.module)
        elif isinstance(node, ast.Import):
            deps.update(alias.name for alias in node.names)
    return {d for d in deps if d in known}


def test_no_module_level_import_cycle():
    known = _modules()
    graph = {name: _imports(path, known, lazy=False) - {name} for name, path in known.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        for dep in graph[name]:
            assert dep not in trail, "import cycle: " + " -> ".join([*trail[trail.index(dep) :], dep])
            if dep not in done:
                visit(dep, [*trail, dep])
        done.add(name)

    for name in graph:
        visit(name, [name])


def _all_imports_of(prefix: str) -> dict[str, set[str]]:
    known = _modules()
    return {
        name: _imports(path, known, lazy=True)
        for name, path in known.items()
        if name == prefix or name.startswith(prefix + ".")
    }


def test_the_miner_exporter_uses_the_subnet_rules_not_the_network_exporter():
    for name, deps in _all_imports_of("exporters.miner").items():
        assert not any(d.startswith("exporters.network") for d in deps), name
    assert any(
        d.startswith("exporters.subnet") for deps in _all_imports_of("exporters.miner").values() for d in deps
    )


def test_the_subnet_rules_import_no_exporter():
    for name, deps in _all_imports_of("exporters.subnet").items():
        exporters = ("exporters.miner", "exporters.validator", "exporters.network", "exporters.demo")
        assert not any(d.startswith(exporters) for d in deps), name


def test_alerts_and_dashboards_share_the_uid_registry_without_importing_each_other():
    for name, deps in _all_imports_of("alerts").items():
        assert not any(d.startswith("dashboards") for d in deps), name
    for name, deps in _all_imports_of("dashboards").items():  # thresholds only: panels draw alert lines
        assert {d for d in deps if d.startswith("alerts")} <= {"alerts.thresholds"}, name
    users = [n for n, deps in {**_all_imports_of("alerts"), **_all_imports_of("dashboards")}.items()
             if "exporters.dashboard_uids" in deps]  # fmt: skip
    assert any(u.startswith("alerts") for u in users) and any(u.startswith("dashboards") for u in users)


def test_config_and_web_config_do_not_import_each_other():
    known = _modules()
    webconfig = _imports(known["exporters.core.webconfig"], known, lazy=True)
    assert "exporters.core.config" not in webconfig
