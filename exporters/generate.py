"""``opencompute-exporter generate``: write the dashboards, alert rules and Kubernetes objects.

Everything under ``dashboards/generated/``, ``alerts/generated/`` and
``deploy/kubernetes/generated/`` is rendered from code (``dashboards.build_all()``,
``alerts.build_rule_groups()``, ``exporters.k8s``) and committed. Rendering is deterministic and
needs no network, so running it twice changes nothing, and ``--check`` (for CI) exits 1 with a
unified diff when the committed files differ from what the code produces.

grafanalib is imported inside :func:`run` (via ``dashboards``), keeping ``--help`` fast.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from exporters.core.config import Flag, FlagSet

# Where each kind of output lives under --output-dir, and which files there are ours.
GENERATED_DIRS: dict[str, str] = {
    "dashboards/generated": "*.json",
    "alerts/generated": "*.yml",
    "deploy/kubernetes/generated": "*.yaml",
}
EXIT_STALE = 1


def repo_root() -> Path:
    """The checkout holding ``dashboards/`` and ``alerts/`` (the default output directory)."""
    return Path(__file__).resolve().parent.parent


def flags() -> FlagSet:
    """The generate subcommand's flags."""
    from alerts.builder import GRAFANA_URL, RUNBOOK_URL  # PyYAML only: cheap enough for --help

    fs = FlagSet()
    fs.add(
        Flag(
            "output-dir",
            "Directory under which dashboards/generated, alerts/generated and "
            "deploy/kubernetes/generated are written (default: this checkout).",
            default=None,
            convert=Path,
            metavar="DIR",
        ),
        Flag(
            "check",
            "Write nothing; exit 1 and print a diff if any generated file is stale or missing.",
            default=False,
            is_bool=True,
        ),
        Flag(
            "grafana.url",
            "Grafana base URL for the alerts' dashboard_url annotations.",
            default=GRAFANA_URL,
            convert=lambda text: text.rstrip("/"),
            metavar="URL",
        ),
        Flag(
            "runbook.url",
            "Base URL of docs/runbook.md for the alerts' runbook_url annotations (each alert adds "
            "#<alertname>): your wiki's copy, or the file at a release tag.",
            default=RUNBOOK_URL,
            convert=lambda text: text.rstrip("#"),
            metavar="URL",
        ),
    )
    return fs


def render_all(grafana_url: str, runbook_url: str | None = None) -> dict[str, str]:
    """Every generated file as {path relative to the output dir: text}."""
    import alerts
    import dashboards
    from alerts.builder import RUNBOOK_URL
    from exporters import k8s

    runbook = runbook_url or RUNBOOK_URL
    boards = dashboards.build_all()
    groups = alerts.build_rule_groups(grafana_url, runbook)
    files: dict[str, str] = {}
    for name, text in dashboards.render_files(boards).items():
        files[f"dashboards/generated/{name}"] = text
    for name, text in alerts.render_files(grafana_url, runbook).items():
        files[f"alerts/generated/{name}"] = text
    for name, text in k8s.render(groups, boards).items():
        files[f"deploy/kubernetes/generated/{name}"] = text
    return dict(sorted(files.items()))


@dataclass
class Plan:
    """What differs between the rendered files and the output directory."""

    changed: dict[str, str] = field(default_factory=dict)  # path -> new text (missing or different)
    unchanged: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # generated-looking files no longer produced


def plan(out: Path, files: Mapping[str, str]) -> Plan:
    """Compare ``files`` with what ``out`` holds."""
    result = Plan()
    for rel, text in files.items():
        path = out / rel
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            result.unchanged.append(rel)
        else:
            result.changed[rel] = text
    for directory, pattern in GENERATED_DIRS.items():
        for path in sorted((out / directory).glob(pattern)):
            rel = path.relative_to(out).as_posix()
            if rel not in files:
                result.stale.append(rel)
    return result


def diff(out: Path, result: Plan) -> str:
    """A unified diff from the files on disk to the rendered ones."""
    chunks: list[str] = []
    for rel, text in result.changed.items():
        path = out / rel
        old = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.is_file() else []
        chunks.extend(difflib.unified_diff(old, text.splitlines(keepends=True), f"a/{rel}", f"b/{rel}"))
    for rel in result.stale:
        old = (out / rel).read_text(encoding="utf-8").splitlines(keepends=True)
        chunks.extend(difflib.unified_diff(old, [], f"a/{rel}", "/dev/null"))
    return "".join(chunks)


def apply(out: Path, result: Plan) -> None:
    """Write changed files and remove stale ones; untouched files keep their mtime."""
    for rel, text in result.changed.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for rel in result.stale:
        (out / rel).unlink()


def run(values: dict[str, Any], stdout: TextIO | None = None) -> int:
    """Render everything; write it, or with ``--check`` report staleness."""
    stream = stdout or sys.stdout
    out = Path(values["output_dir"]) if values.get("output_dir") else repo_root()
    files = render_all(values["grafana_url"], values.get("runbook_url"))
    result = plan(out, files)
    if values.get("check"):
        if not result.changed and not result.stale:
            print(f"generate --check: {len(files)} generated files are up to date", file=stream)
            return 0
        stream.write(diff(out, result))
        names = sorted([*result.changed, *result.stale])
        print(
            f"generate --check: {len(names)} generated file(s) are stale: {', '.join(names)}\n"
            "run `opencompute-exporter generate` and commit the result",
            file=stream,
        )
        return EXIT_STALE
    apply(out, result)
    for rel in result.changed:
        print(f"wrote {rel}", file=stream)
    for rel in result.stale:
        print(f"removed {rel}", file=stream)
    print(
        f"{len(result.changed)} written, {len(result.stale)} removed, {len(result.unchanged)} unchanged",
        file=stream,
    )
    return 0
