"""The live network's state store: runs in the shared WandB project ``neuralinternet/opencompute``.

Writes go to **runs of our own** (``opencompute-exporter-{role}-{hotkey}``, config = the signed
envelope only; see :mod:`exporters.core.state.naming`), never into the neuron's
``{role}-{hotkey}`` run, which the SN27 neuron rewrites whole on every update. Their ids live
in a local ``opencompute_exporter_runs`` table (display name -> run id); a run already
carrying our name is adopted only when its envelope is signed by our hotkey.

Online, a publish is synchronous and acknowledged: one ``UpsertBucket`` through the public API
(``Api.create_run`` the first time, then ``public.Run.update``, which sends the whole config,
which is fine because the run is ours alone), then the run is read back (``Run`` query) and
the write counts only if the server returns what we sent. ``wandb.init`` is not used online:
wandb-core queues ``config.update`` and debounces ``UpsertBucket`` (5 s), so nothing would
tell us whether the server took it. Offline (``WANDB_MODE=offline``) still writes a real
offline run through ``wandb.init`` (for ``wandb sync`` and tests); it is never "acknowledged".

``target="neuron"`` (the dangerous ``--publish.into-neuron-run``, simulations and test
networks only) writes into ``{role}-{hotkey}`` (id from the original's ``wandb_runs`` table or
the newest run with that name): it re-reads the server's config, changes only our keys, and
after the write checks that no other key changed; if one did (the neuron wrote in between),
the publish fails with reason ``conflict``.

Reads use WandB's public GraphQL ``Runs`` query with the original's server-side filters
(``config.role``, ``config.config.netuid``, ``{"config.<key>": {"$exists": true}}``, ``state:
running``), sent over plain HTTPS (:mod:`exporters.core.state.wandb_graphql`: in wandb 0.31
every ``wandb.Api`` call goes through the Go wandb-core process, which cost more CPU than the
whole refresh), asking only for the six fields a record needs, one request per page of a bounded
``per_page``, with explicit timeouts. A config whose raw JSON is unchanged since the last read
is not parsed again: the same dict is handed back (readers must treat configs as read-only).
Every failure becomes :class:`StoreUnavailable` with a bounded reason (``timeout``, ``auth``,
``rejected``, ``unavailable``, ``unconfirmed``, ``conflict``,
``error``).

Traps handled here (see shared/reference/environment-notes.md):

- ``wandb.Api()`` verifies credentials eagerly and, without a key, may *prompt*; so the key is
  resolved up front (``api_key`` / ``WANDB_API_KEY`` / ``~/.netrc``) and a missing key is a
  :class:`ConfigError` at startup, never a hang.
- Offline mode never writes ``config.yaml``; what was written lives only in the binary
  ``run-<id>.wandb`` until ``wandb sync``. Readers therefore always go through the API.
- ``wandb.Api`` caches runs per path and query: every read and read-back flushes first.

``wandb`` is imported lazily: it costs ~0.6 s and ``--help`` must stay fast.
"""

from __future__ import annotations

import json
import logging
import math
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
from exporters.core.signing import canonical, normalize
from exporters.core.state.base import RequestCounts, RunRecord, StoreError, StoreUnavailable
from exporters.core.state.naming import envelope_of, exporter_filters, run_name
from exporters.core.state.wandb_graphql import VIEWER_QUERY, GraphQLClient, loads

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.wandb.ai"
DEFAULT_TIMEOUT = 20.0
DEFAULT_PER_PAGE = 50
_NO_KEY_MODES = ("offline", "disabled")


def _models(db: peewee.Database) -> tuple[type[peewee.Model], type[peewee.Model]]:
    class WandbRun(peewee.Model):  # the original's table: hotkey -> the neuron's run id
        hotkey = peewee.TextField(primary_key=True)
        run_id = peewee.TextField()

        class Meta:
            database = db
            table_name = "wandb_runs"

    class ExporterRun(peewee.Model):  # ours: display name -> our run id
        name = peewee.TextField(primary_key=True)
        run_id = peewee.TextField()

        class Meta:
            database = db
            table_name = "opencompute_exporter_runs"

    return WandbRun, ExporterRun


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
        self._runs: dict[Any, Any] = {}
        self._api: Any = None  # the light GraphQL reader (exporters.core.state.wandb_graphql)
        self._write_api: Any = None  # wandb.Api: writes, and the reads that confirm them
        self._prefetched: tuple[str, Any, float] | None = None
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
        self._WandbRun, self._ExporterRun = _models(self._db)
        self._db.create_tables([self._WandbRun, self._ExporterRun], safe=True)

    # ------------------------------------------------------------------ StateStore

    @property
    def acknowledges(self) -> bool:
        """Whether a successful publish means the server acknowledged it (online only)."""
        return self.mode == "online"

    def run_id_for(self, role: str, hotkey: str, target: str = "exporter") -> str:
        """Our run's id (table, else an adoptable run with our name, else new); or the neuron's."""
        name = run_name(role, hotkey, target)
        if target == "neuron":
            row = self._WandbRun.get_or_none(self._WandbRun.hotkey == hotkey)
            if row is not None:
                return row.run_id
            run_id = self._find_existing(name, None) or _generate_id()
            self._WandbRun.insert(hotkey=hotkey, run_id=run_id).on_conflict_ignore().execute()
            return self._WandbRun.get(self._WandbRun.hotkey == hotkey).run_id
        row = self._ExporterRun.get_or_none(self._ExporterRun.name == name)
        if row is not None:
            return row.run_id
        run_id = self._find_existing(name, hotkey) or _generate_id()
        self._ExporterRun.insert(name=name, run_id=run_id).on_conflict_ignore().execute()
        return self._ExporterRun.get(self._ExporterRun.name == name).run_id

    def publish(
        self,
        role: str,
        hotkey: str,
        updates: dict[str, Any],
        defaults: dict[str, Any] | None = None,
        *,
        target: str = "exporter",
    ) -> str:
        """Write ``updates`` (our run: as its whole config; the neuron's: only these keys)."""
        with self._lock:
            if self.mode == "online":
                return self._publish_online(role, hotkey, updates, defaults or {}, target)
            return self._publish_local(role, hotkey, updates, defaults or {}, target)

    def current_config(self, role: str, hotkey: str, target: str = "exporter") -> dict[str, Any] | None:
        """The server's config of that run now (None when it does not exist or offline)."""
        if self.mode != "online":
            run = self._runs.get((target, hotkey))
            return dict(run.config) if run is not None else None
        with self._lock:
            run_id = self.run_id_for(role, hotkey, target)
            run = self._fetch(run_id)
            # The publish that usually follows at once reuses this read (one request fewer).
            self._prefetched = (run_id, run, time.monotonic())
            return dict(run.config) if run is not None else None

    def read_exporter_runs(self, role: str, netuid: int) -> list[RunRecord]:
        """Our exporters' runs of ``role`` on ``netuid`` (selected on the envelope's fields)."""
        return self._query(exporter_filters(role, netuid), "read")

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

    def local_run(self, hotkey: str, target: str = "exporter") -> Any:
        """The open offline ``wandb`` run object for ``hotkey`` (None if not opened here)."""
        return self._runs.get((target, hotkey))

    # ------------------------------------------------------------------ internals

    def _publish_online(
        self, role: str, hotkey: str, updates: dict[str, Any], defaults: dict[str, Any], target: str
    ) -> str:
        run_id = self.run_id_for(role, hotkey, target)
        run = self._take_prefetched(run_id) if target == "exporter" else self._fetch(run_id)
        if run is None:
            self._create(run_id)
            run = self._fetch(run_id)  # the full fragment: update() sends group, jobType, tags, ...
            if run is None:
                raise StoreUnavailable(
                    f"wandb created run {run_id} but does not return it", reason="unconfirmed"
                )
        before = dict(run.config)
        config = dict(updates) if target == "exporter" else {**before, **updates}
        for key, value in defaults.items():
            config.setdefault(key, value)
        if target == "neuron":
            self._refuse_if_changed(run_id, before)
        run.config.clear()
        run.config.update(config)
        run.display_name = run_name(role, hotkey, target)
        self._count("publish")
        try:
            run.update()
        except Exception as exc:
            raise _map_error(exc, "publish") from exc
        self._confirm(run_id, config, before if target == "neuron" else {}, set(updates))
        return run_id

    def _take_prefetched(self, run_id: str) -> Any:
        """The run read by ``current_config`` moments ago (our run: only we write it), else a fresh read."""
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is not None and prefetched[0] == run_id and time.monotonic() - prefetched[2] < 5.0:
            if prefetched[1] is not None:
                return prefetched[1]
        return self._fetch(run_id)

    def _refuse_if_changed(self, run_id: str, before: dict[str, Any]) -> None:
        """W&B has no conditional write: re-read right before writing the neuron's run and refuse
        if the neuron changed it since we read it (our whole-config write would roll it back).
        The window left is one request long; hence this mode is for simulations only."""
        latest = self._fetch(run_id)
        now = dict(latest.config) if latest is not None else {}
        changed = sorted(
            k for k in set(now) | set(before) if not _same(now.get(k, _MISSING), before.get(k, _MISSING))
        )
        if changed:
            raise StoreError(
                f"the neuron's run changed while we prepared our write (keys {changed[:3]}); "
                "refusing to write it back",
                reason="conflict",
            )

    def _confirm(self, run_id: str, sent: dict[str, Any], before: dict[str, Any], ours: set[str]) -> None:
        """Read the run back: the server must hold what we sent, and every key not ours unchanged."""
        back = self._fetch(run_id, operation="confirm")
        stored = dict(back.config) if back is not None else {}
        missing = [k for k in sorted(ours) if not _same(stored.get(k, _MISSING), sent[k])]
        if missing:
            raise StoreUnavailable(
                f"wandb publish not confirmed: the server does not return {missing[:3]} as written",
                reason="unconfirmed",
            )
        changed = [
            k for k in sorted(before) if k not in ours and not _same(stored.get(k, _MISSING), before[k])
        ]
        if changed:
            raise StoreError(
                f"the neuron's run changed while we wrote it (keys {changed[:3]}); we may have rolled "
                "them back: stop publishing into the neuron's run",
                reason="conflict",
            )

    def _fetch(self, run_id: str, operation: str = "read") -> Any:
        """``api.run(path)`` with a fresh cache; None when the run does not exist."""
        api = self._writer()
        api.flush()
        self._count(operation)
        try:
            run = api.run(f"{self.entity_project}/{run_id}")
            run.config  # noqa: B018 - loads the run (raises RunNotFoundError when absent)
            return run
        except Exception as exc:
            if type(exc).__name__ == "RunNotFoundError" or "Could not find run" in str(exc):
                return None
            raise _map_error(exc, operation) from exc

    def _create(self, run_id: str) -> Any:
        api = self._writer()
        self._count("create")
        try:
            return api.create_run(run_id=run_id, project=self.project, entity=self.entity)
        except Exception as exc:
            raise _map_error(exc, "create") from exc

    def _publish_local(
        self, role: str, hotkey: str, updates: dict[str, Any], defaults: dict[str, Any], target: str
    ) -> str:
        """Offline/disabled: ``run.config.update`` on a real local run (never acknowledged)."""
        run = self._open_run(role, hotkey, target)
        body = dict(updates)
        existing = set(run.config.keys())
        for key, value in defaults.items():
            if key not in existing and key not in body:
                body[key] = value
        self._count("publish")
        try:
            run.config.update(body, allow_val_change=True)
        except Exception as exc:
            self._runs.pop((target, hotkey), None)
            raise _map_error(exc, "publish") from exc
        return run.id

    def _open_run(self, role: str, hotkey: str, target: str = "exporter") -> Any:
        run = self._runs.get((target, hotkey))
        if run is not None:
            return run
        run_id = self.run_id_for(role, hotkey, target)
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
                name=run_name(role, hotkey, target),
                resume="allow",
                reinit="create_new",
                dir=self.run_dir,
                mode=self.mode if self.mode in ("online", "offline", "disabled") else None,
                settings=settings,
            )
        except Exception as exc:
            self._reset_service()
            raise _map_error(exc, "init") from exc
        self._runs[(target, hotkey)] = run
        return run

    def _reset_service(self) -> None:
        """After a failed ``wandb.init`` wandb-core keeps the run id "in use" for the life of the
        service process, so a retry in this process would fail forever: restart the service.
        """
        import wandb

        self._runs.clear()
        self._write_api = None  # its connection belongs to the old service process
        try:
            wandb.teardown()
        except Exception as exc:  # noqa: BLE001 - the next init starts a fresh service anyway
            log.debug("wandb teardown after failed init: %s", type(exc).__name__)

    def _find_existing(self, name: str, signer: str | None) -> str | None:
        """The newest run already named ``name`` when online; for our runs only one whose
        envelope names ``signer`` (anyone can create a run with our name in an open project)."""
        if self.mode != "online":
            return None
        for record in self._query({"display_name": name}, "read"):
            env = envelope_of(record.config)
            if signer is None or (env is not None and env.get("hotkey") == signer):
                return record.run_id
            log.warning(
                "ignoring run %s named %s: its envelope is not signed by %s", record.run_id, name, signer
            )
        return None

    def _writer(self) -> Any:
        """``wandb.Api`` for the write path: its ``Run.update()`` sends the ``UpsertBucket`` whose
        answer, and the read-back after it, make a publish acknowledged."""
        if self._write_api is not None:
            return self._write_api
        if not self._api_key:
            raise StoreUnavailable("no WandB API key configured for writes", reason="auth")
        import wandb

        overrides = {"base_url": self.base_url} if self.base_url else {}
        self._count("auth")  # Api() verifies credentials with a Viewer query
        try:
            self._write_api = wandb.Api(
                overrides=overrides, timeout=math.ceil(self.timeout), api_key=self._api_key
            )
        except Exception as exc:
            raise _map_error(exc, "auth") from exc
        return self._write_api

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


_MISSING = object()


def _same(stored: Any, sent: Any) -> bool:
    """Equal after the JSON/float64 round trip the server applies."""
    if stored is _MISSING:
        return False
    try:
        return canonical(normalize(stored)) == canonical(normalize(sent))
    except (TypeError, ValueError):
        return stored == sent


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
    elif 400 <= status < 500 or "Could not find project" in text or "project not found" in text:
        reason = "rejected"
    elif not status and isinstance(exc, (ValueError, TypeError, KeyError)):
        return StoreError(f"wandb {operation}: unexpected response ({type(exc).__name__})", reason="error")
    else:
        reason = "unavailable"
    first_line = text.splitlines()[0][:200] if text else type(exc).__name__
    return StoreUnavailable(f"wandb {operation} failed ({reason}): {first_line}", reason=reason)
