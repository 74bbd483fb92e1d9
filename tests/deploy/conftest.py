"""Fixtures for the deploy/ checks: the real validators, found or failed loudly, and repo paths.

Every file under deploy/ is checked by the tool its ecosystem uses (systemd-analyze, promtool,
amtool, check-jsonschema, kubernetes-validate). A missing tool is a FAILED test naming the
package that provides it, never a skip: a green run must mean the files were really checked.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from deploy_tools import DEPLOY, REPO, find_tool


@pytest.fixture(scope="session")
def tool() -> Callable[[str], str]:
    """``tool("promtool")`` -> its path, or the test fails saying how to install it."""
    return find_tool


@pytest.fixture(scope="session")
def run_tool() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a validator with captured text output and a timeout; never raises on a non-zero exit."""

    def run(name: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "", "NO_COLOR": "1"}
        return subprocess.run(
            [find_tool(name), *args], capture_output=True, text=True, timeout=60, env=env, **kwargs
        )

    return run


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def deploy_dir() -> Path:
    return DEPLOY
