"""Generated artefacts are committed: the files on disk must be exactly what the code renders now.

Alert rules, dashboards and the Kubernetes manifests are code whose output is committed, so a
change to a builder without ``opencompute-exporter generate`` must fail CI with that command.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `opencompute-exporter generate`"


def assert_generated_files_current(rendered: Mapping[str, str], directory: Path, pattern: str) -> None:
    """Assert ``directory``'s files matching ``pattern`` are exactly ``rendered`` (name -> text)."""
    where = directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob(pattern)}
    assert sorted(committed) == sorted(rendered), f"{where} holds other files than the code renders: {FIX}"
    stale = sorted(name for name, text in rendered.items() if committed[name] != text)
    assert not stale, f"stale generated files in {where} {stale}: {FIX}"
