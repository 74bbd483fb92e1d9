"""Read the validator's ComputeDb once per scrape into a small typed :class:`Snapshot`.

Data flows one way: SQLite -> :class:`SnapshotReader` (a fixed set of aggregate queries, one
read transaction) -> :class:`Snapshot` -> collectors and the publish payload. Nothing here
writes: the database is opened with ``file:...?mode=ro`` and ``PRAGMA query_only``, a short
busy timeout, and one connection per read that is closed at once, so the exporter never holds a
lock the validator would wait on for longer than one read (a few milliseconds).

Query budget, whatever the number of uids (no query per uid)::

    BEGIN
    SELECT ... FROM miner            SELECT ... FROM stats          SELECT ... FROM miner_details
    SELECT ... FROM allocation       SELECT ... FROM blacklist
    SELECT watermark of pog_stats          (+ one GROUP BY aggregate when it changed)
    SELECT watermark of challenge_details  (+ one GROUP BY aggregate when it changed)
    COMMIT

``pog_stats`` and ``challenge_details`` can be large and have no index we could use (and we may
not add one: the file is the validator's), so a full GROUP BY over 100k rows costs tens of
milliseconds. Their aggregates are cached with a watermark (file identity, row count, lowest and
highest rowid, the newest row's content). Unchanged: the cache is used. Rows only appended (the
count grew by exactly the rows past the highest rowid, the lowest rowid and the old newest row
unchanged): only the new rows are aggregated, by primary-key range, and merged. Anything else
(deletes, a reused rowid, another file), and any aggregate whose last full run is older than
``aggregate_max_age`` (default 5 minutes), is recomputed in full. The original only ever inserts
into and deletes from these tables; the age bound covers anything else.

Failures are named (:data:`REASONS`) and recorded per table: a missing table fails only the
collectors that read it; a locked, corrupt or missing file fails the whole read. One bad value
(invalid JSON, an unparseable timestamp) skips only that value and is counted in
:attr:`Snapshot.invalid`.

The pieces: :mod:`~exporters.validator.schema` (tables, read-only URI, failure reasons),
:mod:`~exporters.validator.readers` (the small tables), :mod:`~exporters.validator.incremental`
(the big tables' cache), :mod:`~exporters.validator.parsing` (values) and
:mod:`~exporters.validator.records` (the snapshot types). This module puts them together.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import tzinfo
from pathlib import Path
from typing import Any

from peewee import DatabaseError, SqliteDatabase

from exporters.core.statelog import StateLog
from exporters.validator.incremental import BigTable, Cached, ChallengeTable, Mark, PogTable
from exporters.validator.models import (
    Allocation,
    Blacklist,
)
from exporters.validator.parsing import (
    InvalidValues,
)
from exporters.validator.readers import fetch_details, fetch_hotkeys, fetch_miners, fetch_stats
from exporters.validator.records import (
    ReadError,
    Snapshot,
)
from exporters.validator.schema import REASONS, TABLES, classify, readonly_uri

log = logging.getLogger(__name__)


class SnapshotReader:
    """Runs the fixed query set against a read-only connection; one instance per database path.

    ``trace`` receives every SQL statement sent (tests and the benchmark count them).
    ``aggregate_max_age`` bounds how long the big tables' aggregates are merged incrementally
    before a full aggregation runs again (seconds, by ``monotonic``); :attr:`refreshes` counts how
    each aggregate was brought up to date.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        tables: Iterable[str] = TABLES,
        busy_timeout: float = 0.5,
        local_tz: tzinfo | None = None,
        aggregate_max_age: float = 300.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.tables = frozenset(tables)
        unknown = self.tables - set(TABLES)
        if unknown:
            raise ValueError(f"unknown ComputeDb tables: {sorted(unknown)}")
        self.busy_timeout = busy_timeout
        self.local_tz = local_tz
        self.aggregate_max_age = aggregate_max_age
        self._clock = clock
        self._monotonic = monotonic
        self._trace = trace
        self._cache: dict[str, Cached] = {}
        self._big: dict[str, BigTable] = {
            "pog_stats": PogTable(),
            "challenge_details": ChallengeTable(local_tz),
        }
        # (table, "cached" | "incremental" | "full") -> aggregations; tests and the benchmark read it.
        self.refreshes: Counter[tuple[str, str]] = Counter()

    def read(self) -> Snapshot:
        """Read every configured table in one read transaction; never raises for database trouble."""
        now = self._clock()
        if not self.path.exists():
            return Snapshot(
                read_at=now,
                tables=self.tables,
                file_error=ReadError("missing", f"{self.path} does not exist"),
            )
        db = SqliteDatabase(
            readonly_uri(self.path),
            uri=True,
            timeout=self.busy_timeout,
            pragmas=[("query_only", 1)],
            autoconnect=False,
            thread_safe=False,
        )
        try:
            db.connect()
        except (DatabaseError, sqlite3.Error) as exc:
            return Snapshot(read_at=now, tables=self.tables, file_error=classify(exc, self.path))
        try:
            if self._trace is not None:
                db.connection().set_trace_callback(self._trace)
            return self._read_tables(db, now)
        finally:
            db.close()

    def _read_tables(self, db: SqliteDatabase, now: float) -> Snapshot:
        bad = InvalidValues()
        results: dict[str, Any] = {}
        errors: dict[str, ReadError] = {}
        identity = self._file_identity()
        try:
            db.execute_sql("BEGIN")
        except (DatabaseError, sqlite3.Error) as exc:
            return Snapshot(read_at=now, tables=self.tables, file_error=classify(exc, self.path))
        try:
            for table in TABLES:
                if table not in self.tables:
                    continue
                try:
                    results[table] = self._read_table(db, table, bad, identity)
                except (DatabaseError, sqlite3.Error) as exc:
                    error = classify(exc, self.path)
                    if error.reason != "schema":
                        # Locked, corrupt or gone: every further query would fail the same way
                        # (and a locked one would wait the busy timeout again).
                        return Snapshot(
                            read_at=now, tables=self.tables, file_error=error, invalid=dict(bad.counts)
                        )
                    errors[table] = error
                except Exception as exc:  # a value no parser expected: fail this table, not the scrape
                    log.warning("reading table %s failed unexpectedly: %r", table, exc, exc_info=True)
                    errors[table] = ReadError("error", f"{type(exc).__name__}: {exc}")
        finally:
            try:
                db.execute_sql("COMMIT")
            except (DatabaseError, sqlite3.Error):
                log.debug("ending the read transaction failed", exc_info=True)
        return Snapshot(
            read_at=now,
            tables=self.tables,
            errors=errors,
            miners=results.get("miner", {}),
            stats=results.get("stats", {}),
            details=results.get("miner_details", {}),
            allocated=results.get("allocation", ()),
            penalized=results.get("blacklist", ()),
            pog=results.get("pog_stats", {}),
            challenges=results.get("challenge_details", {}),
            invalid=dict(bad.counts),
        )

    def _read_table(
        self, db: SqliteDatabase, table: str, bad: InvalidValues, identity: tuple[int, int]
    ) -> Any:
        if table == "miner":
            return fetch_miners(db, bad)
        if table == "stats":
            return fetch_stats(db, bad)
        if table == "miner_details":
            return fetch_details(db, bad)
        if table == "allocation":
            return fetch_hotkeys(db, Allocation, bad)
        if table == "blacklist":
            return fetch_hotkeys(db, Blacklist, bad)
        return self._aggregate(db, self._big[table], bad, identity)

    def _aggregate(
        self, db: SqliteDatabase, table: BigTable, bad: InvalidValues, identity: tuple[int, int]
    ) -> Any:
        """The table's summaries: cached, brought up to date with appended rows, or recomputed."""
        cached = self._cache.get(table.name)
        mark, old_high_row = table.read_mark(db, identity, cached.mark.high if cached else None)
        mono = self._monotonic()
        plan, why = self._plan(cached, mark, old_high_row, mono)
        if cached is not None and plan == "cached":
            self.refreshes[(table.name, plan)] += 1
            bad.counts.update(cached.invalid)
            return cached.data
        state: Mapping[Any, tuple[Any, ...]] | None = None
        full_at = mono
        if cached is not None and plan == "incremental":
            appended = table.partials(db, cached.mark.high)
            if sum(table.rows_in(p) for p in appended.values()) == mark.rows - cached.mark.rows:
                merged = dict(cached.state)
                for key, partial in appended.items():
                    merged[key] = table.merge(merged[key], partial) if key in merged else partial
                state, full_at = merged, cached.full_at
            else:
                plan, why = "full", "rows were deleted"
        if state is None:
            log.debug("aggregating %s in full: %s", table.name, why)
            state = table.partials(db, None)
        own = InvalidValues()
        data = table.derive(state, own)
        self._cache[table.name] = Cached(mark, full_at, state, data, own.counts)
        self.refreshes[(table.name, plan)] += 1
        bad.counts.update(own.counts)
        return data

    def _plan(
        self, cached: Cached | None, mark: Mark, old_high_row: tuple[Any, ...], mono: float
    ) -> tuple[str, str]:
        """How to bring a big table's aggregate up to date, and why: cached, incremental or full."""
        if cached is None:
            return "full", "first read"
        before = cached.mark
        if before.identity != mark.identity:
            return "full", "another file is at the path"
        if mono - cached.full_at > self.aggregate_max_age:
            # The safety net for what the watermark cannot see (an UPDATE of an older row).
            return "full", "the aggregate reached its maximum age"
        if old_high_row != before.high_row:
            return "full", "the newest row was deleted, rewritten or its rowid reused"
        if (mark.rows, mark.low, mark.high) == (before.rows, before.low, before.high):
            return "cached", "unchanged"
        if (
            before.rows > 0
            and before.high is not None
            and mark.high is not None
            and mark.low == before.low
            and mark.high > before.high
            and mark.rows > before.rows
        ):
            return "incremental", "rows appended"  # confirmed by counting the appended rows
        return "full", "rows were deleted"

    def forget(self) -> None:
        """Drop the cached aggregates, so the next read aggregates the big tables in full."""
        self._cache.clear()

    def _file_identity(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except OSError:
            return (0, 0)
        return (st.st_dev, st.st_ino)


class SnapshotSource:
    """Shares one snapshot between the collectors of a scrape and counts read failures.

    Each collector calls :meth:`get`; a snapshot younger than ``reuse_window`` seconds is
    returned as is, so a scrape (or two Prometheus servers scraping at once) reads the database
    once. Failures are counted per failed query in :attr:`errors` and logged when the state
    changes (and a reminder while it lasts), not on every scrape.
    """

    def __init__(
        self,
        reader: SnapshotReader,
        *,
        reuse_window: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.reuse_window = reuse_window
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last: Snapshot | None = None
        self._last_mono = -math.inf
        self._states = StateLog(log)  # once per change of state, plus a reminder every 10 min
        self.errors: Counter[str] = Counter(dict.fromkeys(REASONS, 0))
        self.reads = 0

    def get(self) -> Snapshot:
        """The current snapshot, read now unless one from the last ``reuse_window`` exists."""
        with self._lock:
            mono = self._monotonic()
            if self._last is not None and mono - self._last_mono < self.reuse_window:
                return self._last
            snap = self.reader.read()
            self.reads += 1
            self._account(snap)
            self._last, self._last_mono = snap, self._monotonic()
            return snap

    def invalidate(self) -> None:
        """Forget the shared snapshot: the next :meth:`get` reads the database."""
        with self._lock:
            self._last = None

    def _account(self, snap: Snapshot) -> None:
        failures = {"*": snap.file_error} if snap.file_error else dict(snap.errors)
        for error in failures.values():
            self.errors[error.reason] += 1
        if not failures:
            self._states.ok("db", f"validator db {self.reader.path} readable again")
            return
        state = sorted((table, error.reason) for table, error in failures.items())
        lines = [
            f"{'database' if table == '*' else f'table {table}'} unreadable: reason={error.reason} "
            f"detail={error.detail}"
            for table, error in sorted(failures.items())
        ]
        self._states.failing("db", repr(state), f"validator db {self.reader.path}: " + "; ".join(lines))
