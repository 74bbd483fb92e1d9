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
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from peewee import JOIN, SQL, Case, DatabaseError, Select, SqliteDatabase, fn

from exporters.core.statelog import StateLog
from exporters.validator.models import (
    Allocation,
    Blacklist,
    ChallengeDetails,
    Miner,
    MinerDetails,
    PogStats,
    Stats,
)

log = logging.getLogger(__name__)

REASONS: tuple[str, ...] = ("missing", "locked", "corrupt", "schema", "error")

TABLES: tuple[str, ...] = (
    "miner",
    "stats",
    "miner_details",
    "allocation",
    "blacklist",
    "pog_stats",
    "challenge_details",
)

# Highest uid exported. Subnet 27 has 256 uids; Bittensor allows up to 4096. Rows outside
# 0..MAX_UID are counted as invalid instead of becoming label values.
MAX_UID = 4095
# Longest GPU name kept as a label value; longer ones are cut (NVML names are < 96 bytes).
MAX_LABEL_LENGTH = 128

# The bit mask that turns an extended SQLite result code into its primary code.
_PRIMARY = 0xFF
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 14, 26


# --------------------------------------------------------------------------- typed snapshot


@dataclass(frozen=True)
class GpuSpecs:
    """A proof-of-GPU result: the ``{"gpu_name", "num_gpus"}`` the validator publishes."""

    gpu_name: str
    num_gpus: int


@dataclass(frozen=True)
class StatsRecord:
    """One ``stats`` row, validated. ``score`` is as stored (possibly x100-inflated)."""

    uid: int
    hotkey: str
    gpu_specs: GpuSpecs | None
    score: float | None
    allocated: bool
    own_score: bool
    reliability_score: float | None
    created_at: str | None


@dataclass(frozen=True)
class DetailsRecord:
    """One ``miner_details`` row: whether it holds specs, and the validator's miss counter."""

    hotkey: str
    has_specs: bool
    no_specs_count: int


@dataclass(frozen=True)
class PogSummary:
    """Aggregate of one hotkey's ``pog_stats`` rows (newest by id, the autoincrement key)."""

    hotkey: str
    rows: int
    last_timestamp: float | None
    last_success_timestamp: float | None
    gpu: GpuSpecs | None


@dataclass(frozen=True)
class ChallengeSummary:
    """Aggregate of one uid's legacy ``challenge_details`` rows."""

    uid: int
    successes: int
    failures: int
    elapsed_avg_seconds: float | None
    last_timestamp: float | None


@dataclass(frozen=True)
class ReadError:
    """Why one table (or the whole file) could not be read: a bounded reason and a detail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape needs from ComputeDb, read in one transaction."""

    read_at: float
    tables: frozenset[str]
    errors: Mapping[str, ReadError] = field(default_factory=dict)
    file_error: ReadError | None = None
    miners: Mapping[int, str] = field(default_factory=dict)
    stats: Mapping[int, StatsRecord] = field(default_factory=dict)
    details: Mapping[str, DetailsRecord] = field(default_factory=dict)
    allocated: tuple[str, ...] = ()
    penalized: tuple[str, ...] = ()
    pog: Mapping[str, PogSummary] = field(default_factory=dict)
    challenges: Mapping[int, ChallengeSummary] = field(default_factory=dict)
    invalid: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        """True when the file opened and every table asked for was read."""
        return self.file_error is None and not self.errors

    def has(self, *tables: str) -> bool:
        """True when all of ``tables`` were read successfully in this snapshot."""
        return self.file_error is None and all(t in self.tables and t not in self.errors for t in tables)

    def error_for(self, *tables: str) -> ReadError | None:
        """The first error that keeps ``tables`` from being usable, or None."""
        if self.file_error is not None:
            return self.file_error
        for t in tables:
            if t in self.errors:
                return self.errors[t]
            if t not in self.tables:
                return ReadError("error", f"table {t} was not read")
        return None

    def uid_hotkeys(self) -> dict[int, str]:
        """uid -> hotkey: the ``miner`` table, completed by ``stats`` for uids it lacks."""
        out = {uid: rec.hotkey for uid, rec in self.stats.items()}
        out.update(self.miners)
        return dict(sorted(out.items()))

    def hotkey_uids(self) -> dict[str, int]:
        """hotkey -> uid, the inverse of :meth:`uid_hotkeys`: at most one hotkey per uid."""
        return {hotkey: uid for uid, hotkey in self.uid_hotkeys().items()}

    def queryable_uids(self) -> set[int]:
        """uids the validator's last scoring pass treated as queryable (see docs/metrics/validator.md).

        A uid counts when it is in ``miner``, its ``stats`` row carries the same hotkey (the row
        belongs to the current registration), and the validator holds proof-of-GPU evidence for
        it: ``pog_stats`` rows for the hotkey or non-null ``stats.gpu_specs``. ``sync_scores``
        deletes the PoG rows of non-queryable uids and writes them ``gpu_specs = NULL``.
        """
        out = set()
        for uid, hotkey in self.miners.items():
            rec = self.stats.get(uid)
            if rec is None or rec.hotkey != hotkey:
                continue
            if hotkey in self.pog or rec.gpu_specs is not None:
                out.add(uid)
        return out


# The published stats scale: local scores are 0..100 (calc_score_pog x 100).
SCORE_SCALE_MAX = 100.0


def normalized_score(rec: StatsRecord) -> tuple[float | None, bool]:
    """(score on the 0..100 scale, whether it was x100-inflated) for one ``stats`` row.

    v1.9.0 copies another validator's score (already 0..100) and multiplies it by 100 again, so
    ``own_score = False`` rows can reach 10 000. Such a row above 100 is divided back. Local
    rows (``own_score = True``) are never inflated and are returned as stored.
    """
    if rec.score is None:
        return None, False
    if not rec.own_score and rec.score > SCORE_SCALE_MAX:
        return rec.score / 100.0, True
    return rec.score, False


# --------------------------------------------------------------------------- error handling


class DbReadError(Exception):
    """A read failed for a named reason; collectors raise it to fail only themselves."""

    def __init__(self, error: ReadError, table: str | None = None) -> None:
        where = f"table {table}: " if table else ""
        super().__init__(f"{where}{error.reason}: {error.detail}")
        self.error = error
        self.table = table


def _sqlite_cause(exc: BaseException) -> BaseException:
    """peewee re-raises sqlite3 errors as its own type with the original as ``args[0]``."""
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None or isinstance(seen, sqlite3.Error):
            break
        inner = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = inner or seen.__cause__ or seen.__context__
    return seen if isinstance(seen, BaseException) else exc


def classify(exc: BaseException, path: Path | None = None) -> ReadError:
    """Map an SQLite error to a bounded reason (:data:`REASONS`) and a one-line detail."""
    cause = _sqlite_cause(exc)
    detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
    code = getattr(cause, "sqlite_errorcode", None)
    primary = code & _PRIMARY if isinstance(code, int) else None
    msg = detail.lower()
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED) or "database is locked" in msg:
        return ReadError("locked", detail)
    if primary == _SQLITE_READONLY or "readonly database" in msg:
        # A hot journal or WAL only the validator (a writer) may recover: transient, like a lock.
        return ReadError("locked", detail)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or "malformed" in msg or "not a database" in msg:
        return ReadError("corrupt", detail)
    if "no such table" in msg or "no such column" in msg:
        return ReadError("schema", detail)
    if (primary == _SQLITE_CANTOPEN or "unable to open" in msg) and path is not None and not path.exists():
        return ReadError("missing", f"{path} does not exist")
    return ReadError("error", detail)


# --------------------------------------------------------------------------- value parsing


class _Invalid:
    """Counts values that could not be used, by (table, column)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()

    def add(self, table: str, column: str) -> None:
        self.counts[(table, column)] += 1


def parse_timestamp(value: Any, naive_tz: tzinfo | None) -> float:
    """Unix seconds from a ComputeDb timestamp; raise ValueError when it is not one.

    ``pog_stats``/``stats`` hold SQLite ``CURRENT_TIMESTAMP`` text (UTC, ``YYYY-MM-DD HH:MM:SS``);
    ``challenge_details`` holds ``datetime.now().isoformat()`` (local time, ``T``, maybe
    microseconds). Naive values are read in ``naive_tz``; None means this host's local zone.
    """
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, int | float):
        if not (math.isfinite(value) and 1e8 < value < 1e11):
            raise ValueError(f"number {value!r} is not a plausible unix time")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"not a timestamp: {value!r}")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz) if naive_tz is not None else moment.astimezone()
    return moment.timestamp()


def _float(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise ValueError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _int(value: Any) -> int:
    number = _float(value)
    if number != int(number):
        raise ValueError("not an integer")
    return int(number)


_TRUE_TEXT = {"1", "true", "t", "yes"}
_FALSE_TEXT = {"0", "false", "f", "no", ""}


def _bool(value: Any) -> bool:
    """SQLite BOOLEAN as the validator writes it (0/1); NULL reads as False, like ``bool(row)``."""
    if value is None:
        return False
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _TRUE_TEXT | _FALSE_TEXT:
        return value.strip().lower() in _TRUE_TEXT
    raise ValueError(f"not a boolean: {value!r}")


def _label(text: str) -> str:
    return text if len(text) <= MAX_LABEL_LENGTH else text[:MAX_LABEL_LENGTH]


def gpu_specs_from(name: Any, count: Any) -> GpuSpecs | None:
    """GpuSpecs from a name and a count, or None when either is missing or malformed."""
    if not isinstance(name, str) or not name.strip():
        return None
    try:
        num = _int(count)
    except (ValueError, TypeError, OverflowError):
        return None
    return GpuSpecs(_label(name.strip()), num) if num >= 0 else None


def parse_gpu_specs(raw: Any) -> GpuSpecs | None:
    """``stats.gpu_specs`` JSON -> GpuSpecs; None for NULL; ValueError when it is not that shape."""
    if raw is None or raw == "":
        return None
    data = json.loads(raw) if isinstance(raw, str | bytes) else raw
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("gpu_specs is not an object")
    specs = gpu_specs_from(data.get("gpu_name"), data.get("num_gpus"))
    if specs is None:
        raise ValueError("gpu_specs lacks a gpu_name or a num_gpus")
    return specs


def _uid(value: Any) -> int:
    uid = _int(value)
    if not 0 <= uid <= MAX_UID:
        raise ValueError(f"uid {uid} out of range")
    return uid


def _hotkey(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("hotkey is not a string")
    return _label(value.strip())


# --------------------------------------------------------------------------- queries


def _fetch_miners(db: SqliteDatabase, bad: _Invalid) -> dict[int, str]:
    out: dict[int, str] = {}
    for uid_raw, hotkey_raw in (
        Miner.select(Miner.uid, Miner.ss58_address).order_by(Miner.uid).tuples().execute(db)
    ):
        uid = _checked(bad, "miner", "uid", _uid, uid_raw)
        hotkey = _checked(bad, "miner", "ss58_address", _hotkey, hotkey_raw) if uid is not None else None
        if uid is not None and hotkey is not None:
            out[uid] = hotkey
    return out


def _fetch_stats(db: SqliteDatabase, bad: _Invalid) -> dict[int, StatsRecord]:
    query = Stats.select(
        Stats.uid,
        Stats.hotkey,
        Stats.gpu_specs,
        Stats.score,
        Stats.allocated,
        Stats.own_score,
        Stats.reliability_score,
        Stats.created_at,
    ).order_by(Stats.uid)
    out: dict[int, StatsRecord] = {}
    for (
        uid_raw,
        hotkey_raw,
        specs_raw,
        score_raw,
        alloc_raw,
        own_raw,
        rel_raw,
        created,
    ) in query.tuples().execute(db):
        try:
            uid, hotkey = _uid(uid_raw), _hotkey(hotkey_raw)
        except (ValueError, TypeError, OverflowError):
            bad.add("stats", "uid")
            continue
        out[uid] = StatsRecord(
            uid=uid,
            hotkey=hotkey,
            gpu_specs=_checked(bad, "stats", "gpu_specs", parse_gpu_specs, specs_raw),
            score=None if score_raw is None else _checked(bad, "stats", "score", _float, score_raw),
            allocated=bool(_checked(bad, "stats", "allocated", _bool, alloc_raw)),
            own_score=bool(_checked(bad, "stats", "own_score", _bool, own_raw)),
            reliability_score=None
            if rel_raw is None
            else _checked(bad, "stats", "reliability_score", _float, rel_raw),
            created_at=created if isinstance(created, str) else None,
        )
    return out


def _checked(bad: _Invalid, table: str, column: str, parse: Callable[[Any], Any], raw: Any) -> Any:
    """``parse(raw)``, or None after counting the value as invalid."""
    try:
        return parse(raw)
    except (ValueError, TypeError, OverflowError):
        bad.add(table, column)
        return None


def _fetch_details(db: SqliteDatabase, bad: _Invalid) -> dict[str, DetailsRecord]:
    query = MinerDetails.select(MinerDetails.hotkey, MinerDetails.details, MinerDetails.no_specs_count)
    out: dict[str, DetailsRecord] = {}
    for hotkey_raw, details_raw, misses_raw in query.tuples().execute(db):
        try:
            hotkey = _hotkey(hotkey_raw)
        except ValueError:
            bad.add("miner_details", "hotkey")
            continue
        has_specs = False
        if isinstance(details_raw, str) and details_raw.strip():
            try:
                parsed = json.loads(details_raw)
                has_specs = isinstance(parsed, dict) and bool(parsed)
            except ValueError:
                bad.add("miner_details", "details")
        elif details_raw is not None:
            bad.add("miner_details", "details")
        misses = (
            0 if misses_raw is None else _checked(bad, "miner_details", "no_specs_count", _int, misses_raw)
        )
        out[hotkey] = DetailsRecord(hotkey, has_specs, misses or 0)
    return out


def _fetch_hotkeys(
    db: SqliteDatabase, model: type[Allocation] | type[Blacklist], bad: _Invalid
) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for (raw,) in model.select(model.hotkey).order_by(model.id).tuples().execute(db):
        try:
            hotkey = _hotkey(raw)
        except ValueError:
            bad.add(model._meta.table_name, "hotkey")
            continue
        if hotkey not in seen:
            seen.add(hotkey)
            out.append(hotkey)
    return tuple(out)


# --------------------------------------------------------------------------- big tables
#
# ``pog_stats`` and ``challenge_details`` can hold 100k rows and have no index we could use for
# a GROUP BY (we may not add one: the file is the validator's), so a full aggregate costs tens
# of milliseconds. Their aggregates are kept between scrapes as a *raw state*: one partial
# aggregate per GROUP BY key (the raw column value), plus a watermark of the table (row count,
# lowest and highest rowid, the newest row). The original only appends to these tables and
# deletes old rows, so when the table only grew past the watermark, the new rows alone are
# aggregated (``WHERE id > ?``: a primary-key range, a few hundred rows) and merged into the
# state. Anything else (a delete, a reused rowid, a replaced file, a state older than the
# maximum age) runs the full aggregate again. Both paths run the same SQL (the incremental one
# adds the range), and summaries are derived from the raw state by one function, so the
# incremental result is the full one (see tests/validator/test_validator_incremental.py).


def _sqlite_order(value: Any) -> tuple[int, Any]:
    """Sort key that orders mixed SQLite values as SQLite does: NULL < numbers < text < blobs."""
    if value is None:
        return (0, 0)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)  # code point order is UTF-8 byte order, SQLite's BINARY collation
    return (3, bytes(value))


def _newest(a: Any, b: Any) -> Any:
    """SQL ``MAX`` of two partial maxima (NULL is ignored, as MAX ignores it)."""
    if a is None:
        return b
    if b is None:
        return a
    return b if _sqlite_order(b) > _sqlite_order(a) else a


# Stands for the watermark in a prepared aggregate query; replaced by the value at execution.
_AFTER = object()


@dataclass(frozen=True)
class _Mark:
    """Where a big table stood when its aggregate was brought up to date: the watermark."""

    identity: tuple[int, int]
    rows: int
    low: int | None
    high: int | None
    high_row: tuple[Any, ...]


class _BigTable:
    """One big table: its watermark query, its partial aggregate, merge and derivation."""

    name: str
    key: str
    columns: tuple[str, ...]

    def __init__(self) -> None:
        self._sql: dict[bool, tuple[str, list[Any]]] = {}

    def read_mark(
        self, db: SqliteDatabase, identity: tuple[int, int], previous_high: int | None
    ) -> tuple[_Mark, tuple[Any, ...]]:
        """The table's watermark now, and the current content of the row at ``previous_high``.

        One statement: COUNT/MIN/MAX as separate scalar subqueries (SQLite optimises each alone,
        not the three together) and two primary-key lookups. A row's content includes its key,
        so a missing row reads as all NULL and never equals a stored one.
        """
        cols = ", ".join(f"h.{c}" for c in (self.key, *self.columns))
        old = ", ".join(f"o.{c}" for c in (self.key, *self.columns))
        t, k = self.name, self.key
        row = db.execute_sql(
            f"SELECT s.n, s.lo, s.hi, {cols}, {old} FROM (SELECT (SELECT COUNT(*) FROM {t}) AS n,"
            f" (SELECT MIN({k}) FROM {t}) AS lo, (SELECT MAX({k}) FROM {t}) AS hi) AS s"
            f" LEFT JOIN {t} AS h ON h.{k} = s.hi LEFT JOIN {t} AS o ON o.{k} = ?",
            (previous_high,),
        ).fetchone()
        width = 1 + len(self.columns)
        mark = _Mark(identity, int(row[0]), row[1], row[2], tuple(row[3 : 3 + width]))
        return mark, tuple(row[3 + width :])

    def query(self, after: Any) -> Select:
        """The aggregate per raw GROUP BY key: the key, then the partial's columns.

        ``after`` None: every row; otherwise only rows whose key is greater (a primary-key range).
        """
        raise NotImplementedError

    def partials(self, db: SqliteDatabase, after: int | None) -> dict[Any, tuple[Any, ...]]:
        """Partial aggregates per raw GROUP BY key, of all rows or of those with key > ``after``."""
        incremental = after is not None
        if incremental not in self._sql:  # built once: peewee takes ~1 ms to render the query
            self._sql[incremental] = (
                db.get_sql_context().sql(self.query(_AFTER if incremental else None)).query()
            )
        sql, params = self._sql[incremental]
        cursor = db.execute_sql(sql, [after if p is _AFTER else p for p in params])
        return {row[0]: tuple(row[1:]) for row in cursor}

    @staticmethod
    def rows_in(partial: tuple[Any, ...]) -> int:
        """Rows a partial aggregate covers (its first element is COUNT(*))."""
        return int(partial[0])

    def merge(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        """Combine the aggregate of older rows with that of rows appended after them."""
        raise NotImplementedError

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: _Invalid) -> dict[Any, Any]:
        """The typed summaries of a raw state, counting unusable values in ``bad``."""
        raise NotImplementedError


class _PogTable(_BigTable):
    """``pog_stats`` per hotkey: (rows, newest created_at, newest success's name/count/created_at).

    The newest row is the highest ``id`` (AUTOINCREMENT: never reused). The newest *success* is
    the row the original's ``get_pog_specs`` returns (``WHERE gpu_name IS NOT NULL AND num_gpus
    IS NOT NULL ORDER BY created_at DESC LIMIT 1``): the latest ``created_at``, and among rows of
    the same second (``CURRENT_TIMESTAMP`` has 1 s resolution) the **oldest**, lowest ``id``,
    which is what SQLite's sorter returns for that query (checked against SQLite in
    tests/validator/test_validator_snapshot.py). Rows appended after the watermark have higher
    ids, so merging keeps the old success on a tie and takes a new one only when it is later.
    """

    name, key = "pog_stats", "id"
    columns = ("hotkey", "gpu_name", "num_gpus", "created_at")

    def query(self, after: Any) -> Select:
        success = PogStats.gpu_name.is_null(False) & PogStats.num_gpus.is_null(False)
        agg = PogStats.select(
            PogStats.hotkey,
            fn.COUNT(SQL("*")).alias("n"),
            fn.MAX(PogStats.id).alias("last_id"),
        )
        order = [PogStats.created_at.desc(), PogStats.id.asc()]
        ranked = PogStats.select(
            PogStats.hotkey.alias("hk"),
            PogStats.id.alias("rid"),
            fn.ROW_NUMBER().over(partition_by=[PogStats.hotkey], order_by=order).alias("rk"),
        ).where(success)
        if after is not None:
            agg = agg.where(PogStats.id > after)
            ranked = ranked.where(PogStats.id > after)
        agg = agg.group_by(PogStats.hotkey).cte("agg")
        ranked = ranked.cte("ranked")
        last, good = PogStats.alias("last"), PogStats.alias("good")
        on_rank = (ranked.c.hk == agg.c.hotkey) & (ranked.c.rk == 1)
        return (
            agg.select_from(
                agg.c.hotkey, agg.c.n, last.created_at, good.gpu_name, good.num_gpus, good.created_at
            )
            .join(last, on=(last.id == agg.c.last_id))
            .join(ranked, JOIN.LEFT_OUTER, on=on_rank)
            .join(good, JOIN.LEFT_OUTER, on=(good.id == ranked.c.rid))
            .with_cte(agg, ranked)
        )

    def merge(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        # A success row has non-NULL gpu_name and num_gpus; the LEFT JOIN gives NULLs when none.
        later = new[2] is not None and (old[2] is None or _sqlite_order(new[4]) > _sqlite_order(old[4]))
        good = new[2:5] if later else old[2:5]
        return (old[0] + new[0], new[1], *good)

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: _Invalid) -> dict[str, PogSummary]:
        out: dict[str, PogSummary] = {}
        for hotkey_raw in sorted(state, key=_sqlite_order):
            rows, last_at, gpu_name, num_gpus, ok_at = state[hotkey_raw]
            try:
                hotkey = _hotkey(hotkey_raw)
            except ValueError:
                bad.add("pog_stats", "hotkey")
                continue
            gpu = gpu_specs_from(gpu_name, num_gpus)
            if gpu is None and gpu_name is not None:
                bad.add("pog_stats", "num_gpus")
            out[hotkey] = PogSummary(
                hotkey=hotkey,
                rows=int(rows),
                last_timestamp=_checked(bad, "pog_stats", "created_at", _utc_ts, last_at),
                last_success_timestamp=None
                if gpu is None
                else _checked(bad, "pog_stats", "created_at", _utc_ts, ok_at),
                gpu=gpu,
            )
        return out


class _ChallengeTable(_BigTable):
    """``challenge_details`` per uid: (rows, successes, elapsed sum, elapsed count, average, newest).

    The average is kept with its sum and count so that appended rows merge exactly (a weighted
    mean, not a mean of means); a merged average is the float sum over the count, which can
    differ from SQLite's own AVG in the last bit. ``challenge_details`` has no AUTOINCREMENT, so
    SQLite may reuse the highest rowid after a delete; the watermark's newest-row check catches it.
    """

    name, key = "challenge_details", "rowid"
    columns = ("uid", "ss58_address", "success", "elapsed_time", "difficulty", "created_at")

    def __init__(self, local_tz: tzinfo | None) -> None:
        super().__init__()
        self.local_tz = local_tz

    def query(self, after: Any) -> Select:
        # NOT INDEXED: grouping through idx_uid costs one random table lookup per row (2x slower
        # than a scan and a sort at 100k rows), and would hide the rowid range of an increment.
        cd = ChallengeDetails.alias("c")
        query = cd.select(
            cd.uid,
            fn.COUNT(SQL("*")),
            fn.SUM(Case(None, [(cd.success, 1)], 0)),
            fn.TOTAL(cd.elapsed_time),
            fn.COUNT(cd.elapsed_time),
            fn.AVG(cd.elapsed_time),
            fn.MAX(cd.created_at),
        ).from_(SQL('"challenge_details" AS "c" NOT INDEXED'))
        if after is not None:
            query = query.where(SQL('"c"."rowid" > ?', [after]))
        return query.group_by(cd.uid)

    def merge(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        count = old[3] + new[3]
        if not new[3]:
            total, avg = old[2], old[4]
        elif not old[3]:
            total, avg = new[2], new[4]
        else:
            total = old[2] + new[2]
            avg = total / count
        return (old[0] + new[0], old[1] + new[1], total, count, avg, _newest(old[5], new[5]))

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: _Invalid) -> dict[int, ChallengeSummary]:
        out: dict[int, ChallengeSummary] = {}
        for uid_raw in sorted(state, key=_sqlite_order):
            total, successes, _, _, elapsed, last_at = state[uid_raw]
            try:
                uid = _uid(uid_raw)
            except (ValueError, TypeError, OverflowError):
                bad.add("challenge_details", "uid")
                continue
            ok = int(successes or 0)
            out[uid] = ChallengeSummary(
                uid=uid,
                successes=ok,
                failures=int(total) - ok,
                elapsed_avg_seconds=None
                if elapsed is None
                else _checked(bad, "challenge_details", "elapsed_time", _float, elapsed),
                last_timestamp=None
                if last_at is None
                else _checked(bad, "challenge_details", "created_at", self._local_ts, last_at),
            )
        return out

    def _local_ts(self, value: Any) -> float:
        return parse_timestamp(value, self.local_tz)


def _utc_ts(value: Any) -> float:
    return parse_timestamp(value, UTC)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Cached:
    """A big table's aggregate: watermark, raw state, derived summaries and their invalid values.

    Never mutated: an update builds a new one, so snapshots already handed out stay as they were.
    """

    mark: _Mark
    full_at: float
    state: Mapping[Any, tuple[Any, ...]]
    data: Mapping[Any, Any]
    invalid: Counter[tuple[str, str]]


def readonly_uri(path: Path) -> str:
    """``file:`` URI that opens ``path`` read-only (percent-encoded, so '?' or '#' in a path are safe)."""
    return path.absolute().as_uri() + "?mode=ro"


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
        self._cache: dict[str, _Cached] = {}
        self._big: dict[str, _BigTable] = {
            "pog_stats": _PogTable(),
            "challenge_details": _ChallengeTable(local_tz),
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
        bad = _Invalid()
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

    def _read_table(self, db: SqliteDatabase, table: str, bad: _Invalid, identity: tuple[int, int]) -> Any:
        if table == "miner":
            return _fetch_miners(db, bad)
        if table == "stats":
            return _fetch_stats(db, bad)
        if table == "miner_details":
            return _fetch_details(db, bad)
        if table == "allocation":
            return _fetch_hotkeys(db, Allocation, bad)
        if table == "blacklist":
            return _fetch_hotkeys(db, Blacklist, bad)
        return self._aggregate(db, self._big[table], bad, identity)

    def _aggregate(
        self, db: SqliteDatabase, table: _BigTable, bad: _Invalid, identity: tuple[int, int]
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
        own = _Invalid()
        data = table.derive(state, own)
        self._cache[table.name] = _Cached(mark, full_at, state, data, own.counts)
        self.refreshes[(table.name, plan)] += 1
        bad.counts.update(own.counts)
        return data

    def _plan(
        self, cached: _Cached | None, mark: _Mark, old_high_row: tuple[Any, ...], mono: float
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
