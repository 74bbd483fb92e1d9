"""Which ComputeDb tables we read, how a read is opened, and how its failures are named.

The bounded reasons (:data:`REASONS`) come from SQLite's result codes: a missing table or
column is ``schema`` (fails only that table's collectors), a lock ``locked``, a damaged file
``corrupt``; the file is always opened read-only (:func:`readonly_uri`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from exporters.validator.records import (
    ReadError,
)

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

# The bit mask that turns an extended SQLite result code into its primary code.
_PRIMARY = 0xFF
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 11, 14, 26


def readonly_uri(path: Path) -> str:
    """``file:`` URI that opens ``path`` read-only (percent-encoded, so '?' or '#' in a path are safe)."""
    return path.absolute().as_uri() + "?mode=ro"


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
