"""A durable, ordered outbox of config updates waiting to be published (SQLite via peewee).

Why: publishing goes to WandB over the network, which can be slow or down for hours. A
collector or a loop must never block on it, and a crash must never lose the newest state.
So ``append`` is a local committed INSERT (``synchronous=FULL``: it survives SIGKILL and power
loss), and the publisher drains entries in order later. The last successfully published
state and the v2 sequence number live in the same file, so a restart resumes exactly where
the previous process stopped, and sequence numbers never go backwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import peewee

from exporters.core.state.base import StoreError

DEFAULT_MAX_ENTRIES = 1000


@dataclass(frozen=True)
class Pending:
    """The pending updates merged in order, and the newest entry id they cover."""

    updates: dict[str, Any]
    upto_id: int
    entries: int


def _models(db: peewee.Database) -> tuple[type[peewee.Model], type[peewee.Model]]:
    class Entry(peewee.Model):
        id = peewee.AutoField()
        payload = peewee.TextField()
        created_at = peewee.FloatField()

        class Meta:
            database = db
            table_name = "outbox"

    class Meta(peewee.Model):
        key = peewee.CharField(primary_key=True)
        value = peewee.TextField()

        class Meta:
            database = db
            table_name = "publisher_state"

    return Entry, Meta


class Outbox:
    """Pending updates plus the publisher's persistent state (published config, seq)."""

    def __init__(
        self,
        path: str,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.path.expanduser(path)
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.max_entries = max_entries
        self._clock = clock
        self._db = peewee.SqliteDatabase(
            self.path,
            timeout=busy_timeout,
            pragmas={"journal_mode": "wal", "synchronous": "full", "busy_timeout": int(busy_timeout * 1000)},
        )
        self._Entry, self._Meta = _models(self._db)
        self._guard(lambda: self._db.create_tables([self._Entry, self._Meta], safe=True))

    def append(self, updates: dict[str, Any]) -> int:
        """Durably enqueue one update; returns the number of pending entries."""
        body = orjson.dumps(updates).decode()

        def write() -> int:
            with self._db.atomic("IMMEDIATE"):
                self._Entry.create(payload=body, created_at=self._clock())
                count = self._Entry.select().count()
                if count > self.max_entries:
                    count = self._compact()
                return count

        return self._guard(write)

    def pending(self) -> Pending | None:
        """All pending updates merged in order (later keys supersede earlier ones)."""

        def read() -> Pending | None:
            rows = list(self._Entry.select().order_by(self._Entry.id))
            if not rows:
                return None
            merged: dict[str, Any] = {}
            for row in rows:
                merged.update(orjson.loads(row.payload))
            return Pending(merged, rows[-1].id, len(rows))

        return self._guard(read)

    def count(self) -> int:
        """Pending entries."""
        return self._guard(lambda: self._Entry.select().count())

    def next_seq(self) -> int:
        """Reserve and persist the next sequence number before it is used (never reused)."""

        def bump() -> int:
            with self._db.atomic("IMMEDIATE"):
                seq = int(self._get("seq", "0")) + 1
                self._set("seq", str(seq))
                return seq

        return self._guard(bump)

    def seq(self) -> int:
        """The last sequence number reserved."""
        return self._guard(lambda: int(self._get("seq", "0")))

    def published(self) -> dict[str, Any]:
        """The full state last published successfully ({} before the first success)."""
        return self._guard(lambda: orjson.loads(self._get("published", "{}")))

    def last_success(self) -> float | None:
        """Unix time of the last successful publish."""
        value = self._guard(lambda: self._get("last_success", ""))
        return float(value) if value else None

    def published_signature(self) -> str:
        """The v2 signature of the last successful publish ("" before the first)."""
        return self._guard(lambda: self._get("published_signature", ""))

    def set_inflight(self, seq: int, signature: str) -> None:
        """Remember a write about to be sent, so a crash before ``commit`` is not mistaken for
        another writer when the server holds it after the restart."""
        self._guard(lambda: self._set("inflight", f"{seq}:{signature}"))

    def inflight(self) -> tuple[int, str] | None:
        """The last write sent (seq, signature), committed or not."""
        value = self._guard(lambda: self._get("inflight", ""))
        seq, _, signature = value.partition(":")
        return (int(seq), signature) if seq.isdigit() else None

    def raise_seq(self, floor: int) -> int:
        """Make the next reserved sequence number larger than ``floor`` (adopting a run)."""

        def bump() -> int:
            with self._db.atomic("IMMEDIATE"):
                seq = max(int(self._get("seq", "0")), int(floor))
                self._set("seq", str(seq))
                return seq

        return self._guard(bump)

    def published_seq(self) -> int:
        """The sequence number of the last successful publish (0 before the first)."""
        return self._guard(lambda: int(self._get("published_seq", "0")))

    def commit(
        self,
        state: dict[str, Any],
        upto_id: int | None,
        at: float,
        seq: int | None = None,
        signature: str | None = None,
    ) -> int:
        """Record a successful publish of ``state``: drop entries up to ``upto_id``; return how many."""

        def write() -> int:
            with self._db.atomic("IMMEDIATE"):
                removed = 0
                if upto_id is not None:
                    removed = self._Entry.delete().where(self._Entry.id <= upto_id).execute()
                self._set("published", orjson.dumps(state).decode())
                self._set("last_success", repr(at))
                if seq is not None:
                    self._set("published_seq", str(seq))
                if signature is not None:
                    self._set("published_signature", signature)
                return removed

        return self._guard(write)

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    def _compact(self) -> int:
        """Fold every pending entry into one, keeping the newest value of each key."""
        rows = list(self._Entry.select().order_by(self._Entry.id))
        merged: dict[str, Any] = {}
        for row in rows:
            merged.update(orjson.loads(row.payload))
        last = rows[-1]
        self._Entry.delete().where(self._Entry.id < last.id).execute()
        self._Entry.update(payload=orjson.dumps(merged).decode()).where(self._Entry.id == last.id).execute()
        return 1

    def _get(self, key: str, default: str) -> str:
        row = self._Meta.get_or_none(self._Meta.key == key)
        return default if row is None else row.value

    def _set(self, key: str, value: str) -> None:
        self._Meta.replace(key=key, value=value).execute()

    def _guard(self, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except peewee.DatabaseError as exc:
            # The outbox is local; failing here is a host problem (disk full, permissions).
            raise StoreError(f"outbox {self.path}: {exc}", reason="error") from exc
