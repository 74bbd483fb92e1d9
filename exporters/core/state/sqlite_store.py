"""The embedded state store: WandB-shaped runs in one SQLite file (peewee, WAL).

Why: the demo, the tests and hosts without WandB still need somewhere to publish signed run
state and read everyone else's. Each run row mirrors a WandB run: an 8-character id (what v1
signatures cover), a display name, the config as JSON, a state and times. Our exporters write
runs of their own (``opencompute-exporter-{role}-{hotkey}``, config = the signed envelope only,
see :mod:`exporters.core.state.naming`); ``{role}-{hotkey}`` rows are the neurons'.
Filters reproduce the original's server-side WandB filters with SQLite's JSON functions
(``config.role``, ``config.config.netuid``, ``{"config.<key>": {"$exists": true}}``), so
``read_runs`` returns what the original would read and never our runs; ``read_exporter_runs``
selects ours on the envelope's role and netuid.

Several exporter processes on one host may share the file: WAL lets readers run beside the
single writer, ``busy_timeout`` makes a writer wait instead of failing at once, and a publish
is one ``BEGIN IMMEDIATE`` read-merge-write transaction, so concurrent merges never lose keys.
"""

from __future__ import annotations

import os
import secrets
import string
import time
from collections.abc import Callable
from typing import Any

import orjson
import peewee

from exporters.core.signing import ENVELOPE_KEY
from exporters.core.state.base import RequestCounts, RunRecord, StoreError, StoreUnavailable
from exporters.core.state.naming import EXPORTER_RUN_PREFIX, run_name

_ID_ALPHABET = string.ascii_lowercase + string.digits  # WandB run ids: 8 chars of [a-z0-9]
DEFAULT_BUSY_TIMEOUT = 5.0


def new_run_id() -> str:
    """A fresh 8-character run id in WandB's alphabet."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def _models(db: peewee.Database) -> type[peewee.Model]:
    """Model classes bound to one database, so several stores can live in one process."""

    class Run(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        project = peewee.CharField()
        name = peewee.CharField()
        role = peewee.CharField()
        hotkey = peewee.CharField()
        config = peewee.TextField(default="{}")
        state = peewee.CharField(default="running")
        created_at = peewee.FloatField()
        updated_at = peewee.FloatField()

        class Meta:
            database = db
            table_name = "runs"
            indexes = ((("project", "name"), True), (("project", "role"), False))

    return Run


class SQLiteStateStore:
    """StateStore backed by a local SQLite file; safe for several processes on one host."""

    backend = "sqlite"
    supports_defaults = True

    def __init__(
        self,
        path: str,
        entity_project: str = "neuralinternet/opencompute",
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = os.path.expanduser(path)
        self.entity_project = entity_project
        self._clock = clock
        self._requests = RequestCounts()
        parent = os.path.dirname(self.path)
        if parent and self.path != ":memory:":
            os.makedirs(parent, exist_ok=True)
        self._db = peewee.SqliteDatabase(
            self.path,
            timeout=busy_timeout,
            pragmas={
                "journal_mode": "wal",
                "busy_timeout": int(busy_timeout * 1000),
                "synchronous": "normal",
            },
        )
        self._Run = _models(self._db)
        self._busy_timeout = busy_timeout
        self._guard("init", self._init_schema)

    # ------------------------------------------------------------------ StateStore

    def run_id_for(self, role: str, hotkey: str, target: str = "exporter") -> str:
        """The stable id of our run (or, with ``target="neuron"``, of ``{role}-{hotkey}``)."""
        self._count("run_id")
        return self._guard("run_id", lambda: self._ensure_run(role, hotkey, target).id)

    def publish(
        self,
        role: str,
        hotkey: str,
        updates: dict[str, Any],
        defaults: dict[str, Any] | None = None,
        *,
        target: str = "exporter",
    ) -> str:
        """Write ``updates`` in one IMMEDIATE transaction; return the run id.

        Our own run (``target="exporter"``) gets ``updates`` as its whole config, as a W&B
        upsert would. The neuron's run (``target="neuron"``, simulations only) is a merge:
        only the keys in ``updates`` change, and ``defaults`` are set only where missing.
        """
        self._count("publish")
        body = dict(updates)
        fallback = dict(defaults or {})

        def write() -> str:
            with self._db.atomic("IMMEDIATE"):
                row = self._ensure_run(role, hotkey, target)
                config = orjson.loads(row.config) if target == "neuron" else {}
                config.update(body)
                for key, value in fallback.items():
                    config.setdefault(key, value)
                now = self._clock()
                self._Run.update(config=orjson.dumps(config).decode(), updated_at=now, state="running").where(
                    self._Run.id == row.id
                ).execute()
                return row.id

        return self._guard("publish", write)

    def current_config(self, role: str, hotkey: str, target: str = "exporter") -> dict[str, Any] | None:
        """The stored config of that run (None if it does not exist yet)."""
        self._count("read")
        Run = self._Run
        name = run_name(role, hotkey, target)

        def read() -> dict[str, Any] | None:
            row = Run.get_or_none((Run.project == self.entity_project) & (Run.name == name))
            return _record(row).config if row is not None else None

        return self._guard("read", read)

    def read_exporter_runs(self, role: str, netuid: int) -> list[RunRecord]:
        """Our exporters' runs of ``role`` on ``netuid`` (envelope fields), newest first."""
        self._count("read")
        Run = self._Run
        cond = (
            (Run.project == self.entity_project)
            & (_json(Run.config, "json_extract", f"$.{ENVELOPE_KEY}.role") == role)
            & (_json(Run.config, "json_extract", f"$.{ENVELOPE_KEY}.netuid") == netuid)
            & (_json(Run.config, "json_type", "$.role").is_null(True))
        )
        query = Run.select().where(cond).order_by(Run.created_at.desc(), Run.id)
        return self._guard("read", lambda: [_record(row) for row in query])

    def read_runs(
        self,
        role: str,
        netuid: int,
        *,
        require_key: str | None = None,
        running_only: bool = False,
        updated_since: float | None = None,
    ) -> list[RunRecord]:
        """Runs of ``role`` on ``netuid``, newest first (the original's WandB order)."""
        self._count("read")
        Run = self._Run
        cond = (
            (Run.project == self.entity_project)
            & (_json(Run.config, "json_extract", "$.role") == role)
            & (_json(Run.config, "json_extract", "$.config.netuid") == netuid)
        )
        if require_key is not None:
            cond &= _json(Run.config, "json_type", _json_path(require_key)).is_null(False)
        if running_only:
            cond &= Run.state == "running"
        if updated_since is not None:
            cond &= Run.updated_at >= updated_since
        query = Run.select().where(cond).order_by(Run.created_at.desc(), Run.id)
        return self._guard("read", lambda: [_record(row) for row in query])

    def request_count(self) -> int:
        """SQL round trips made (one per store operation)."""
        return self._requests.total()

    def request_counts(self) -> dict[str, int]:
        """Requests by operation (run_id, publish, read, state) for the requests_total metric."""
        return self._requests.by_operation()

    # ------------------------------------------------------------------ extras

    def set_state(self, role: str, hotkey: str, state: str) -> None:
        """Mark a run finished/crashed/running, as WandB does when a process stops."""
        self._count("state")
        Run = self._Run

        def write() -> None:
            Run.update(state=state, updated_at=self._clock()).where(
                (Run.project == self.entity_project)
                & (Run.name.in_([run_name(role, hotkey, t) for t in ("exporter", "neuron")]))
            ).execute()

        self._guard("state", write)

    def put_raw(self, run_id: str, name: str, config: dict[str, Any], **fields: Any) -> None:
        """Insert or replace a run verbatim (fixtures, imports, and hostile-input tests)."""
        role, _, hotkey = name.removeprefix(EXPORTER_RUN_PREFIX).partition("-")
        now = self._clock()
        row = {
            "id": run_id,
            "project": self.entity_project,
            "name": name,
            "role": role,
            "hotkey": hotkey,
            "config": orjson.dumps(config).decode(),
            "state": fields.get("state", "running"),
            "created_at": fields.get("created_at", now),
            "updated_at": fields.get("updated_at", now),
        }
        self._guard("put", lambda: self._Run.replace(**row).execute())

    def close(self) -> None:
        """Close this thread's connection."""
        self._db.close()

    # ------------------------------------------------------------------ internals

    def _init_schema(self) -> None:
        # Two processes opening a brand-new file race to switch it to WAL, which needs an
        # exclusive lock that SQLite may refuse at once instead of waiting: retry until the
        # busy timeout, so several exporters starting together on one host all come up.
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                self._db.connect(reuse_if_open=True)
                self._db.create_tables([self._Run], safe=True)
                return
            except peewee.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                self._db.close()
                time.sleep(0.05)

    def _ensure_run(self, role: str, hotkey: str, target: str = "exporter") -> Any:
        Run = self._Run
        name = run_name(role, hotkey, target)
        for _ in range(5):
            row = Run.get_or_none((Run.project == self.entity_project) & (Run.name == name))
            if row is not None:
                return row
            now = self._clock()
            try:
                with self._db.atomic():
                    return Run.create(
                        id=new_run_id(),
                        project=self.entity_project,
                        name=name,
                        role=role,
                        hotkey=hotkey,
                        config="{}",
                        created_at=now,
                        updated_at=now,
                    )
            except peewee.IntegrityError:
                continue  # another process created it (or an id collided): read again
        raise StoreError(f"could not create run {name}", reason="error")

    def _count(self, operation: str) -> None:
        self._requests.add(operation)

    def _guard(self, operation: str, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except StoreError:
            raise
        except peewee.OperationalError as exc:
            reason = "timeout" if "locked" in str(exc) or "busy" in str(exc) else "unavailable"
            raise StoreUnavailable(f"sqlite {operation} failed: {exc}", reason=reason) from exc
        except peewee.DatabaseError as exc:
            raise StoreError(f"sqlite {operation} failed: {exc}", reason="error") from exc


def _json(column: Any, func: str, path: str) -> Any:
    """``json_*(column, path)`` guarded by ``json_valid`` so one corrupt row cannot fail a read."""
    return peewee.Case(None, [(peewee.fn.json_valid(column), getattr(peewee.fn, func)(column, path))], None)


def _json_path(key: str) -> str:
    if '"' in key or "\\" in key:
        raise ValueError(f"unsupported config key {key!r}")
    return f'$."{key}"'


def _record(row: Any) -> RunRecord:
    extra: dict[str, Any] = {"backend": "sqlite"}
    try:
        config = orjson.loads(row.config)
    except orjson.JSONDecodeError:
        config = None
    if not isinstance(config, dict):
        config, extra["invalid_config"] = {}, True
    return RunRecord(
        run_id=row.id,
        name=row.name,
        config=config,
        state=row.state,
        created_at=row.created_at,
        updated_at=row.updated_at,
        extra=extra,
    )
