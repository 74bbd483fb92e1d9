"""Shared helpers for the deploy/ checks (imported by conftest.py and the tests)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

# tool -> how to get it (what scripts/dev.sh must install).
TOOLS: dict[str, str] = {
    "systemd-analyze": "apt-get install systemd",
    "systemd-sysusers": "apt-get install systemd",
    "promtool": "apt-get install prometheus",
    "amtool": "apt-get install prometheus-alertmanager",
    "check-jsonschema": "pip install -e '.[test]' (check-jsonschema)",
    "kubernetes-validate": "pip install -e '.[test]' (kubernetes-validate)",
    "opencompute-exporter": "pip install -e .",
}


def find_tool(name: str) -> str:
    """Absolute path of a validator: the venv's bin first (pip tools), then PATH; else FAIL."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        how = TOOLS.get(name, "?")
        pytest.fail(f"{name} is not installed; the deploy checks need it ({how})", pytrace=False)
    return found


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]
