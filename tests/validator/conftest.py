"""Fixtures for the validator exporter: real ComputeDb SQLite files, built fresh per test."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from validator_helpers import NOW, Scraper

from exporters.validator.simulate import SimulatedDb, create_compute_db, create_schema


@pytest.fixture
def scraper_for() -> Iterator[Callable[..., Scraper]]:
    made: list[Scraper] = []

    def make(path: Path, *args: str, **kwargs: Any) -> Scraper:
        s = Scraper(path, *args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        if s.parts.publisher is not None:
            s.parts.publisher.close()


@pytest.fixture
def sim_db(tmp_path: Path) -> SimulatedDb:
    """A small realistic ComputeDb (16 uids) in the original schema, with legacy challenges."""
    return create_compute_db(tmp_path / "database.db", miners=16, challenge_rows=60, seed=11, now=NOW)


@pytest.fixture
def empty_db(tmp_path: Path) -> Callable[..., Path]:
    """Factory: an empty ComputeDb in the original schema (journal mode as asked), for edge cases."""

    def make(name: str = "edge.db", journal_mode: str = "delete") -> Path:
        path = tmp_path / name
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        create_schema(conn)
        conn.close()
        return path

    return make
