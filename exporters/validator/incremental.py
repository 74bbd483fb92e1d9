"""The big tables' incremental cache: ``pog_stats`` and ``challenge_details`` aggregates.

Kept between reads with a watermark and brought up to date with appended rows only, or
recomputed in full (see the comment below and ``tests/validator/test_validator_incremental.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any

from peewee import JOIN, OP, SQL, Case, Expression, Select, SqliteDatabase, fn

from exporters.validator.models import (
    ChallengeDetails,
    PogStats,
)
from exporters.validator.parsing import (
    InvalidValues,
    checked,
    gpu_specs_from,
    parse_timestamp,
    to_float,
    to_hotkey,
    to_uid,
)
from exporters.validator.records import (
    ChallengeSummary,
    PogSummary,
)

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
class Mark:
    """Where a big table stood when its aggregate was brought up to date: the watermark."""

    identity: tuple[int, int]
    rows: int
    low: int | None
    high: int | None
    high_row: tuple[Any, ...]


class BigTable:
    """One big table: its watermark query, its partial aggregate, merge and derivation."""

    name: str
    key: str
    columns: tuple[str, ...]

    def __init__(self) -> None:
        self._sql: dict[bool, tuple[str, list[Any]]] = {}

    def read_mark(
        self, db: SqliteDatabase, identity: tuple[int, int], previous_high: int | None
    ) -> tuple[Mark, tuple[Any, ...]]:
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
        mark = Mark(identity, int(row[0]), row[1], row[2], tuple(row[3 : 3 + width]))
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

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: InvalidValues) -> dict[Any, Any]:
        """The typed summaries of a raw state, counting unusable values in ``bad``."""
        raise NotImplementedError


class PogTable(BigTable):
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
        # Two aggregates, no sort: the newest success's ``created_at`` per hotkey (``MAX`` orders
        # values exactly as ``ORDER BY`` does), then the lowest id among the successes of that
        # second (``IS``: a NULL created_at matches too, as ORDER BY ... DESC would return it).
        # A ROW_NUMBER() window did the same with a sort of every row (bench_validator: cold 310
        # vs 235 ms, appended 57 vs 45-49 ms at 100k rows).
        success = PogStats.gpu_name.is_null(False) & PogStats.num_gpus.is_null(False)
        agg = PogStats.select(
            PogStats.hotkey,
            fn.COUNT(SQL("*")).alias("n"),
            fn.MAX(PogStats.id).alias("last_id"),
            fn.MAX(Case(None, [(success, PogStats.created_at)])).alias("ok_at"),
        )
        p = PogStats.alias("p")
        best = p.select(p.hotkey.alias("hk"), fn.MIN(p.id).alias("rid"))
        p_success = p.gpu_name.is_null(False) & p.num_gpus.is_null(False)
        if after is not None:
            agg = agg.where(PogStats.id > after)
            p_success = p_success & (p.id > after)
        agg = agg.group_by(PogStats.hotkey).cte("agg")
        same_second = (p.hotkey == agg.c.hotkey) & Expression(p.created_at, OP.IS, agg.c.ok_at)
        # CROSS JOIN keeps pog_stats the outer loop (SQLite's planner would otherwise build an
        # automatic index over all of pog_stats for every read); agg is the small inner side.
        best = best.join(agg, JOIN.CROSS).where(p_success & same_second).group_by(p.hotkey).cte("best")
        last, good = PogStats.alias("last"), PogStats.alias("good")
        return (
            agg.select_from(
                agg.c.hotkey, agg.c.n, last.created_at, good.gpu_name, good.num_gpus, good.created_at
            )
            .join(last, on=(last.id == agg.c.last_id))
            .join(best, JOIN.LEFT_OUTER, on=(best.c.hk == agg.c.hotkey))
            .join(good, JOIN.LEFT_OUTER, on=(good.id == best.c.rid))
            .with_cte(agg, best)
        )

    def merge(self, old: tuple[Any, ...], new: tuple[Any, ...]) -> tuple[Any, ...]:
        # A success row has non-NULL gpu_name and num_gpus; the LEFT JOIN gives NULLs when none.
        later = new[2] is not None and (old[2] is None or _sqlite_order(new[4]) > _sqlite_order(old[4]))
        good = new[2:5] if later else old[2:5]
        return (old[0] + new[0], new[1], *good)

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: InvalidValues) -> dict[str, PogSummary]:
        out: dict[str, PogSummary] = {}
        for hotkey_raw in sorted(state, key=_sqlite_order):
            rows, last_at, gpu_name, num_gpus, ok_at = state[hotkey_raw]
            try:
                hotkey = to_hotkey(hotkey_raw)
            except ValueError:
                bad.add("pog_stats", "hotkey")
                continue
            gpu = gpu_specs_from(gpu_name, num_gpus)
            if gpu is None and gpu_name is not None:
                bad.add("pog_stats", "num_gpus")
            out[hotkey] = PogSummary(
                hotkey=hotkey,
                rows=int(rows),
                last_timestamp=checked(bad, "pog_stats", "created_at", _utc_ts, last_at),
                last_success_timestamp=None
                if gpu is None
                else checked(bad, "pog_stats", "created_at", _utc_ts, ok_at),
                gpu=gpu,
            )
        return out


class ChallengeTable(BigTable):
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

    def derive(self, state: Mapping[Any, tuple[Any, ...]], bad: InvalidValues) -> dict[int, ChallengeSummary]:
        out: dict[int, ChallengeSummary] = {}
        for uid_raw in sorted(state, key=_sqlite_order):
            total, successes, _, _, elapsed, last_at = state[uid_raw]
            try:
                uid = to_uid(uid_raw)
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
                else checked(bad, "challenge_details", "elapsed_time", to_float, elapsed),
                last_timestamp=None
                if last_at is None
                else checked(bad, "challenge_details", "created_at", self._local_ts, last_at),
            )
        return out

    def _local_ts(self, value: Any) -> float:
        return parse_timestamp(value, self.local_tz)


def _utc_ts(value: Any) -> float:
    return parse_timestamp(value, UTC)


@dataclass(frozen=True)
class Cached:
    """A big table's aggregate: watermark, raw state, derived summaries and their invalid values.

    Never mutated: an update builds a new one, so snapshots already handed out stay as they were.
    """

    mark: Mark
    full_at: float
    state: Mapping[Any, tuple[Any, ...]]
    data: Mapping[Any, Any]
    invalid: Counter[tuple[str, str]]
