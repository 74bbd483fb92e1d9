"""Golden /metrics files: compare a rendered exposition with the committed one, or regenerate it.

Run a golden test with ``UPDATE_GOLDEN=1`` after an intended change to rewrite the file, then
review the diff before committing it; without it, any difference fails the test.
"""

from __future__ import annotations

import os
from pathlib import Path


def assert_matches_golden(text: str, golden: Path) -> None:
    """Assert ``text`` equals the committed golden file (rewritten first under UPDATE_GOLDEN=1)."""
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text(), "run with UPDATE_GOLDEN=1 to regenerate, then review the diff"
