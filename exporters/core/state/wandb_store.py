"""The live network's state store: runs in the shared WandB project ``neuralinternet/opencompute``.

Writes follow the original SN27 code so the original keeps reading what we publish: one run per
hotkey named ``{role}-{hotkey}``, its id kept in a local ``wandb_runs`` table (same schema as
the original's ComputeDb: ``hotkey`` primary key, ``run_id``) and resumed with
``wandb.init(id=..., resume="allow")``, config written with
``run.config.update(..., allow_val_change=True)``.

Reads use WandB's public GraphQL ``Runs`` query with the original's server-side filters
(``config.role``, ``config.config.netuid``, ``{"config.<key>": {"$exists": true}}``, ``state:
running``), sent over plain HTTPS (:mod:`exporters.core.state.wandb_graphql`: in wandb 0.31
every ``wandb.Api`` call goes through the Go wandb-core process, which cost more CPU than the
whole refresh), asking only for the six fields a record needs, one request per page of a bounded
``per_page``, with explicit timeouts. A config whose raw JSON is unchanged since the last read
is not parsed again: the same dict is handed back (readers must treat configs as read-only).
Every failure becomes :class:`StoreUnavailable` with a bounded reason (``timeout``, ``auth``,
``rejected``, ``unavailable``, ``error``).

Traps handled here (see shared/reference/environment-notes.md):

- ``wandb.Api()`` verifies credentials eagerly and, without a key, may *prompt*; so the key is
  resolved up front (``api_key`` / ``WANDB_API_KEY`` / ``~/.netrc``) and a missing key is a
  :class:`ConfigError` at startup, never a hang.
- Offline mode (``WANDB_MODE=offline``) never writes ``config.yaml``; what was published
  lives only in the binary ``run-<id>.wandb`` until ``wandb sync``. Readers therefore always
  go through the API, never the local run directory.
- Once a run is open, ``config.update`` is queued by wandb-core and does not fail on a network
  outage; only opening the run (``wandb.init``) can fail, bounded by ``init_timeout``.

``wandb`` is imported lazily: it costs ~0.6 s and ``--help`` must stay fast.
"""

from __future__ import annotations

import json
import logging
import netrc
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import peewee

from exporters.core.config import ConfigError
from exporters.core.state.base import RequestCounts, RunRecord, StoreError, StoreUnavailable
from exporters.core.state.wandb_graphql import VIEWER_QUERY, GraphQLClient, loads

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
DEFAULT_TIMEOUT = 20.0
DEFAULT_PER_PAGE = 50
_NO_KEY_MODES = ("offline", "disabled")


def _models(db: peewee.Database) -> type[peewee.Model]:
    class WandbRun(peewee.Model):
        hotkey = peewee.TextField(primary_key=True)
        run_id = peewee.TextField()

        class Meta:
            database = db
            table_name = "wandb_runs"

    return WandbRun


def resolve_api_key(api_key: str | None, base_url: str | None) -> str | None:
    """The WandB API key from the argument, ``WANDB_API_KEY``, or ``~/.netrc`` for the API host."""
    if api_key:
        return api_key
    if os.environ.get("WANDB_API_KEY"):
        return os.environ["WANDB_API_KEY"]
    host = urlparse(base_url or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL).hostname or ""
    try:
        entry = netrc.netrc(os.environ.get("NETRC") or None).authenticators(host)
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    return entry[2] if entry and entry[2] else None


class WandbStateStore:
    """StateStore on the WandB project; the original's run naming, filters and run-id table."""

    backend = "wandb"
    supports_defaults = True

    def __init__(
        self,
        entity: str = "neuralinternet",
        project: str = "opencompute",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        per_page: int = DEFAULT_PER_PAGE,
        run_dir: str | None = None,
        db_path: str = "~/.opencompute/state.db",
        mode: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.entity, self.project = entity, project
        self.entity_project = f"{entity}/{project}"
        self.base_url = base_url
        self.timeout = timeout
        self.per_page = per_page
        self.mode = mode or os.environ.get("WANDB_MODE") or "online"
        self.run_dir = os.path.expanduser(run_dir) if run_dir else None
        self._clock = clock
        self._api_key = resolve_api_key(api_key, base_url)
        if not self._api_key and self.mode not in _NO_KEY_MODES:
            raise ConfigError(
                [
                    "--state.backend=wandb needs a WandB API key: set WANDB_API_KEY or add the API host "
                    "to ~/.netrc (wandb login); the original subnet code needs the same key"
                ]
            )
        self._lock = threading.RLock()
        self._requests = RequestCounts()
        self._runs: dict[str, Any] = {}
        self._api: Any = None
        # run id -> (raw config JSON, parsed config): an unchanged config is not parsed again, and
        # readers get the same object back (their own per-run memos then hit by identity)
        self._parsed: dict[str, tuple[str, dict[str, Any]]] = {}
        path = os.path.expanduser(db_path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        if self.run_dir:
            os.makedirs(self.run_dir, exist_ok=True)
        self._db = peewee.SqliteDatabase(
            path, timeout=5.0, pragmas={"journal_mode": "wal", "busy_timeout": 5000}
        )
        self._WandbRun = _models(self._db)
        self._db.create_tables([self._WandbRun], safe=True)

    # ------------------------------------------------------------------ StateStore

    def run_id_for(self, role: str, hotkey: str) -> str:
        """The run id for this hotkey: from ``wandb_runs``, else the newest run with our name, else new."""
        row = self._WandbRun.get_or_none(self._WandbRun.hotkey == hotkey)
        if row is not None:
            return row.run_id
        run_id = self._find_existing(f"{role}-{hotkey}") or _generate_id()
        self._WandbRun.insert(hotkey=hotkey, run_id=run_id).on_conflict_ignore().execute()
        return self._WandbRun.get(self._WandbRun.hotkey == hotkey).run_id

    def publish(
        self, role: str, hotkey: str, updates: dict[str, Any], defaults: dict[str, Any] | None = None
    ) -> str:
        """``run.config.update(updates, allow_val_change=True)`` on our (resumed) run."""
        with self._lock:
            run = self._open_run(role, hotkey)
            body = dict(updates)
            existing = set(run.config.keys())
            for key, value in (defaults or {}).items():
                if key not in existing and key not in body:
                    body[key] = value
            self._count("publish")
            try:
                run.config.update(body, allow_val_change=True)
            except Exception as exc:
                self._runs.pop(hotkey, None)
                raise _map_error(exc, "publish") from exc
            return run.id

    def read_runs(
        self,
        role: str,
        netuid: int,
        *,
        require_key: str | None = None,
        running_only: bool = False,
        updated_since: float | None = None,
    ) -> list[RunRecord]:
        """One paginated ``api.runs`` query with the original's filters (newest first)."""
        clauses: list[dict[str, Any]] = [{"config.role": role}, {"config.config.netuid": netuid}]
        if require_key is not None:
            clauses.append({f"config.{require_key}": {"$exists": True}})
        if running_only:
            clauses.append({"state": "running"})
        if updated_since is None:
            return self._query({"$and": clauses}, "read")
        # Incremental read: ask for the most recently active runs first (``-heartbeat_at`` is a
        # documented order) and stop paginating at the first run older than ``updated_since``,
        # so a refresh that finds few changes costs one page, not the whole project.
        return self._query({"$and": clauses}, "read", order="-heartbeat_at", stop_before=updated_since)

    def request_count(self) -> int:
        """WandB API requests made (credential check, pages) plus run opens and config updates."""
        return self._requests.total()

    def request_counts(self) -> dict[str, int]:
        """Requests by operation: auth, read, init, publish."""
        return self._requests.by_operation()

    def close(self) -> None:
        """Finish open runs (flushes offline runs to their .wandb file)."""
        with self._lock:
            runs, self._runs = list(self._runs.values()), {}
        for run in runs:
            try:
                run.finish()
            except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                log.warning("wandb finish failed: %s", type(exc).__name__)
        self._db.close()

    def local_run(self, hotkey: str) -> Any:
        """The open ``wandb`` run object for ``hotkey`` (None if not opened in this process)."""
        return self._runs.get(hotkey)

    # ------------------------------------------------------------------ internals

    def _open_run(self, role: str, hotkey: str) -> Any:
        run = self._runs.get(hotkey)
        if run is not None:
            return run
        run_id = self.run_id_for(role, hotkey)
        import wandb

        settings = wandb.Settings(
            init_timeout=self.timeout,
            silent=True,
            console="off",
            x_disable_stats=True,
            x_disable_meta=True,
            x_disable_machine_info=True,
            x_save_requirements=False,
            disable_git=True,
            save_code=False,
            disable_job_creation=True,
            **({"base_url": self.base_url} if self.base_url else {}),
            **({"api_key": self._api_key} if self._api_key else {}),
        )
        self._count("init")
        try:
            run = wandb.init(
                entity=self.entity,
                project=self.project,
                id=run_id,
                name=f"{role}-{hotkey}",
                resume="allow",
                reinit="create_new",
                dir=self.run_dir,
                mode=self.mode if self.mode in ("online", "offline", "disabled") else None,
                settings=settings,
            )
        except Exception as exc:
            self._reset_service()
            raise _map_error(exc, "init") from exc
        self._runs[hotkey] = run
        return run

    def _reset_service(self) -> None:
        """After a failed ``wandb.init`` wandb-core keeps the run id "in use" for the life of the
        service process, so a retry in this process would fail forever: restart the service.
        """
        import wandb

        self._runs.clear()
        self._api = None  # its connection belongs to the old service process
        try:
            wandb.teardown()
        except Exception as exc:  # noqa: BLE001 - the next init starts a fresh service anyway
            log.debug("wandb teardown after failed init: %s", type(exc).__name__)

    def _find_existing(self, name: str) -> str | None:
        """Adopt the newest run already named ``name`` (as the original does) when online."""
        if self.mode != "online":
            return None
        records = self._query({"display_name": name}, "read")
        return records[0].run_id if records else None

    def _client(self) -> GraphQLClient:
        """The GraphQL reader, created (and its key checked with a Viewer query) on first use."""
        if self._api is not None:
            return self._api
        if not self._api_key:
            raise StoreUnavailable("no WandB API key configured for reads", reason="auth")
        base = self.base_url or os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL
        client = GraphQLClient(base, self._api_key, self.timeout, user_agent=_user_agent())
        self._count("auth")  # like wandb.Api(), verify the credentials once
        viewer = client.execute(VIEWER_QUERY)
        if not isinstance(viewer, dict) or not viewer.get("viewer"):
            raise StoreUnavailable("wandb rejected the API key (no viewer)", reason="auth")
        self._api = client
        return client

    def _query(
        self,
        filters: dict[str, Any],
        operation: str,
        *,
        order: str = "-created_at",
        stop_before: float | None = None,
    ) -> list[RunRecord]:
        with self._lock:
            try:
                return self._pages(self._client(), filters, operation, order, stop_before)
            except StoreError as exc:
                if exc.reason == "auth":
                    self._api = None  # re-verify the key next time
                raise
            except Exception as exc:  # a bug or an unexpected response shape
                raise StoreError(f"wandb {operation}: unexpected response ({type(exc).__name__})") from exc

    def _pages(
        self,
        client: GraphQLClient,
        filters: dict[str, Any],
        operation: str,
        order: str,
        stop_before: float | None,
    ) -> list[RunRecord]:
        """Page through ``Runs`` with :data:`_RUNS_QUERY`: only the six fields a record needs.

        Same filters, order, page size and cursor as ``api.runs(..., lazy=False)``, but not the
        summary/system metrics, history keys and user that the client's fragment also carries
        (large on the live project), and no ``Run`` object or directory per run.
        """
        variables: dict[str, Any] = {
            "project": self.project,
            "entity": self.entity,
            "order": order,
            "filters": json.dumps(filters),
            "perPage": self.per_page,
            "cursor": None,
        }
        records: list[RunRecord] = []
        while True:
            self._count(operation)
            data = client.execute(_RUNS_QUERY, variables)
            project = data.get("project") if isinstance(data, dict) else None
            if not isinstance(project, dict):
                raise StoreUnavailable(f"Could not find project {self.entity_project}", reason="rejected")
            runs = project.get("runs") or {}
            for edge in runs.get("edges") or []:
                record = self._record_of(edge.get("node") or {})
                if stop_before is not None and record.updated_at < stop_before:
                    return records
                records.append(record)
            info = runs.get("pageInfo") or {}
            if not info.get("hasNextPage") or not info.get("endCursor"):
                return records
            variables["cursor"] = info["endCursor"]

    def _record_of(self, node: dict[str, Any]) -> RunRecord:
        raw, run_id = node.get("config"), str(node.get("name") or "")
        known = self._parsed.get(run_id)
        if known is not None and isinstance(raw, str) and known[0] == raw:
            return _light_record(node, known[1])
        record = _light_record(node)
        if isinstance(raw, str) and not record.extra.get("invalid_config"):
            if len(self._parsed) >= _MAX_PARSED:
                self._parsed.clear()
            self._parsed[run_id] = (raw, record.config)
        return record

    def _count(self, operation: str) -> None:
        self._requests.add(operation)


# The subset of wandb's ``RunFragment`` a RunRecord needs; same operation name and variables.
_RUNS_QUERY = """query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50,
    $order: String, $filters: JSONString) {
  project(name: $project, entityName: $entity) {
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges { node { name displayName state config createdAt heartbeatAt } cursor }
      pageInfo { endCursor hasNextPage }
    }
  }
}"""
_MAX_PARSED = 50_000  # parsed configs kept (about the runs of the whole project)
_INTERNAL_CONFIG_KEYS = frozenset({"_wandb", "wandb_version"})  # wandb's WANDB_INTERNAL_KEYS


def _light_record(node: dict[str, Any], config: dict[str, Any] | None = None) -> RunRecord:
    """A RunRecord from one ``Runs`` node: config unwrapped from ``{"value": ...}`` like ``Run``
    (``config``: the already parsed config of the same raw text)."""
    if config is not None:
        return _node_record(node, config, {"backend": "wandb"})
    raw = node.get("config")
    try:
        parsed = loads(raw) if isinstance(raw, str | bytes) else raw
    except ValueError:
        parsed = None
    config = {}
    if isinstance(parsed, dict):
        for key, value in parsed.items():
            if key not in _INTERNAL_CONFIG_KEYS:
                config[key] = value["value"] if isinstance(value, dict) and "value" in value else value
    extra: dict[str, Any] = {"backend": "wandb"}
    if parsed is not None and not isinstance(parsed, dict):
        extra["invalid_config"] = True
    return _node_record(node, config, extra)


def _node_record(node: dict[str, Any], config: dict[str, Any], extra: dict[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=str(node.get("name") or ""),
        name=str(node.get("displayName") or ""),
        config=config,
        state=str(node.get("state") or "unknown"),
        created_at=_timestamp(node.get("createdAt")),
        updated_at=_timestamp(node.get("heartbeatAt")),
        extra=extra,
    )


def _user_agent() -> str:
    try:
        from importlib.metadata import version

        return f"opencompute-exporters/{version('opencompute-exporters')}"
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "opencompute-exporters"


def _generate_id() -> str:
    from wandb.sdk.lib.runid import generate_id

    return generate_id(8)


def _count_pages(runs: Any, count: Callable[[], None]) -> None:
    """Count each page request the paginator makes (one GraphQL ``Runs`` query per page)."""
    fetch = runs._update_response

    def counted() -> None:
        count()
        fetch()

    runs._update_response = counted


def _record(run: Any) -> RunRecord:
    attrs = getattr(run, "_attrs", {}) or {}
    config = run.config
    return RunRecord(
        run_id=run.id,
        name=run.name or "",
        config=dict(config) if isinstance(config, dict) else {},
        state=run.state or "unknown",
        created_at=_timestamp(attrs.get("createdAt")),
        updated_at=_timestamp(attrs.get("heartbeatAt")),
        extra={"backend": "wandb", **({"invalid_config": True} if not isinstance(config, dict) else {})},
    )


def _timestamp(value: Any) -> float:
    """WandB's ISO times are UTC without an offset; 0.0 when missing or unparseable."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _http_status(exc: BaseException | None) -> int:
    """The HTTP status wandb-core saw, looking through AuthenticationError's cause; 0 if none."""
    for err in (exc, getattr(exc, "__cause__", None)):
        response = getattr(err, "response", None)
        status = getattr(response, "http_status", 0) or getattr(response, "status_code", 0)
        if isinstance(status, int) and status:
            return status
    return 0


def _is_auth(exc: BaseException) -> bool:
    from wandb.errors import AuthenticationError

    status = _http_status(exc)
    return status in (401, 403) or (
        isinstance(exc, AuthenticationError) and not status and not _timed_out(exc)
    )


def _timed_out(exc: BaseException) -> bool:
    text = str(exc)
    markers = ("did not respond in time", "Timed out", "deadline exceeded")
    return isinstance(exc, TimeoutError) or any(marker in text for marker in markers)


def _map_error(exc: BaseException, operation: str) -> StoreError:
    """A wandb/network exception -> StoreUnavailable/StoreError with a bounded reason."""
    text = str(exc)
    status = _http_status(exc)
    if _is_auth(exc):
        reason = "auth"
    elif _timed_out(exc):
        reason = "timeout"
    elif 400 <= status < 500 or "Could not find project" in text:
        reason = "rejected"
    elif not status and isinstance(exc, (ValueError, TypeError, KeyError)):
        return StoreError(f"wandb {operation}: unexpected response ({type(exc).__name__})", reason="error")
    else:
        reason = "unavailable"
    first_line = text.splitlines()[0][:200] if text else type(exc).__name__
    return StoreUnavailable(f"wandb {operation} failed ({reason}): {first_line}", reason=reason)
