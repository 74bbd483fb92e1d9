"""Helpers for the validator exporter tests: flag values, a scraper over the real exporter, SQL writes."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from exporters.validator import cli
from exporters.validator.simulate import miner_hotkey

NOW = datetime(2025, 6, 13, 12, 0, 0, tzinfo=UTC)


def resolve(*args: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Flag values of ``opencompute-exporter validator`` as run() would receive them."""
    flagset = cli.flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args(list(args)), environ=environ or {})


class Scraper:
    """Builds the real exporter for a db path and scrapes its registry with a fresh read each time."""

    def __init__(self, path: Path, *args: str, **build: Any) -> None:
        self.values = resolve(f"--validator.db-path={path}", "--validator.local-timezone=UTC", *args)
        self.parts = cli.build_exporter(self.values, **build)
        self.registry: CollectorRegistry = self.parts.exporter.registry

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """One scrape: {(sample name, sorted labels): value}."""
        self.parts.source.invalidate()
        out = {}
        for family in self.registry.collect():
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    def value(self, name: str, **labels: str) -> float | None:
        """Value of one sample in the registry's last state (re-reads only if invalidated)."""
        return self.registry.get_sample_value(name, labels)


def sample(samples: dict, name: str, **labels: str) -> float | None:
    """Look one sample up in the dict a :meth:`Scraper.scrape` returned."""
    return samples.get((name, tuple(sorted(labels.items()))))


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def execute(path: Path, sql: str, params: tuple | list = ()) -> None:
    """Write to a test database the way the validator does: its own connection, committed."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            if params and isinstance(params, list):
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
    finally:
        conn.close()


HOTKEYS = {uid: miner_hotkey(uid) for uid in range(8)}
