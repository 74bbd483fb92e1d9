"""Errors every layer raises and the CLI reports: kept apart so config parsing and the web config
loader both use them without importing each other."""

from __future__ import annotations


class ConfigError(Exception):
    """All configuration problems found at startup, reported together."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
