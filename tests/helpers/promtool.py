"""``promtool check metrics`` on an exposition: the lint every golden /metrics file must pass.

One definition for every exporter's golden test, so they all hold the same bar: no finding at
all (promtool prints lint problems but may still exit 0) and exit status 0. A missing promtool
FAILS the test with the install command (a skip would hide a broken CI image).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

INSTALL_HINT = "apt-get install prometheus"


def promtool_path() -> str:
    """Path of promtool (PATH, then Debian's /usr/bin); pytest.fail (not skip) when missing."""
    found = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(found).exists():
        pytest.fail(f"promtool is required for the metrics lint: {INSTALL_HINT}")
    return found


def check_metrics(exposition: str | bytes | Path) -> subprocess.CompletedProcess[bytes]:
    """Run ``promtool check metrics`` on a text exposition (its text, bytes, or a file)."""
    if isinstance(exposition, Path):
        data = exposition.read_bytes()
    elif isinstance(exposition, str):
        data = exposition.encode()
    else:
        data = exposition
    return subprocess.run(
        [promtool_path(), "check", "metrics"], input=data, capture_output=True, timeout=30, check=False
    )


def assert_promtool_clean(exposition: str | bytes | Path) -> None:
    """Assert promtool finds nothing to say about the exposition and exits 0."""
    result = check_metrics(exposition)
    output = result.stdout.decode() + result.stderr.decode()
    findings = {line.strip() for line in output.splitlines() if line.strip()}
    assert not findings, output
    assert result.returncode == 0, output
