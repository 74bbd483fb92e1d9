"""A FAKE of the WandB server (GraphQL + file stream), for tests only. It is not WandB.

Why a fake: the real wandb client (0.31; both ``wandb.Api`` and ``wandb.init`` talk to the
server through the Go ``wandb-core`` process) must be exercised end to end, and a real W&B
server needs docker and the network. This stdlib HTTP server on ``127.0.0.1:0`` answers
what the client actually sends. Read in wandb's public repository (``github:wandb/wandb`` at
b6e29505, ``core/``) and in the installed Python package, and checked against the requests
the installed 0.31 ``wandb-core`` binary made to this fake:

Reads (``wandb/apis/public/api.py``, ``runs.py``):

- ``Viewer`` (``wandb.Api()`` verifies credentials eagerly; ``core/api/graphql/query_viewer.graphql``)
  and ``GetDefaultEntity``;
- ``Runs($project, $entity, $cursor, $perPage, $order, $filters)`` with the full
  ``RunFragment`` (``lazy=False``) or the lightweight one: mongo-style ``filters``
  (``$and``, ``$or``, ``$exists``, ``$in``, ``$nin``, ``$ne``, ``$gt``/``$gte``/``$lt``/``$lte``,
  equality) on ``config.<key>[.<nested>]``, ``display_name``, ``name``, ``state``;
  ``order`` by ``created_at``/``heartbeat_at``; cursor pagination
  (``edges{node,cursor}``, ``pageInfo{endCursor,hasNextPage}``) and ``runCount``;
- ``Run($project, $entity, $name)`` (``api.run(path)``): ``project{run{...RunFragment}}``,
  ``run: null`` when absent (the client raises ``RunNotFoundError``).

Writes (``wandb.init(id=..., resume="allow")``, ``run.config.update``, ``finish``):

- ``RunResumeStatus`` (``core/api/graphql/query_run_resume_status.graphql``, consumed by
  ``core/internal/runbranch/resume.go`` + ``processresponse.go``): ``model{bucket{config,
  summaryMetrics, historyTail, eventsTail, *LineCount, wandbConfig(keys:["t"])}}``. A run counts
  as started only when ``wandbConfig`` has ``t`` (else the client starts it afresh); on
  resume the client merges the server's config under its own (``runconfig.MergeResumedConfig``):
  that copy is what it sends back later;
- ``UpsertBucket`` (``core/api/graphql/mutation_run.graphql``, sent by
  ``core/internal/runupserter/runupserter.go``, debounced 5 s in ``runupdatework.go``; also
  ``Api.create_run`` and ``public.Run.update``): creates or updates the run by ``id`` (storage
  id) or ``entity/project/name``. With W&B's semantics: a ``config`` variable (JSON of
  ``{key: {"value": v, "desc": ...}}``, ``runconfig.Serialize``) **replaces** the run's whole
  config; ``displayName``, ``state``, ``summaryMetrics`` replace theirs when given;
- ``ServerFeaturesQuery`` / ``ServerInfo`` probes (``query_server_features.graphql``,
  ``query_server_info.graphql``): no optional features;
- ``CreateRunFiles`` (``mutation_create_run_files.graphql``, ``core/internal/runfiles/uploader.go``):
  one upload URL per file on this server, which accepts the ``PUT``. Answering ``{}`` here is
  what made wandb-core 0.31 panic at shutdown (nil ``CreateRunFiles`` dereference in
  ``uploader.upload``); ``MarkRunFilesUploaded`` answers ``success``;
- ``POST /files/{entity}/{project}/{run}/file_stream`` (``core/internal/filestream/filestreamimpl.go``,
  gzip when the ``FILESTREAM_GZIP`` feature is on, which this fake does not announce): history
  lines are counted, every post is a heartbeat, ``complete`` with ``exitcode`` ends the run
  (``finished`` for 0, else ``failed``);
- wandb-core's OTEL metrics posts (``/sdk/otel/v1/metrics``) and anything unknown: an empty
  ``data`` object; unknown GraphQL operation names are kept in ``unhandled``.

Runs live in memory, configs stored the way W&B stores them (``{"key": {"value": ...}}``).
``down(status)`` makes every request fail with that HTTP status, to simulate outages;
``reject(operation, status)`` fails only one operation; ``requests`` counts requests by
operation name (``file_stream`` and ``upload`` for the HTTP endpoints).

``read_offline_run(path)`` decodes a ``run-<id>.wandb`` file written by wandb's *real* offline
mode (LevelDB-log framing of ``wandb_internal_pb2.Record``), so a test can load exactly what a
``wandb sync`` would have uploaded into this fake.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_MISSING = object()
_OPERATION = re.compile(r"\b(query|mutation)\s+(\w+)")


@dataclass
class FakeRun:
    """One run as the fake server holds it."""

    run_id: str
    display_name: str
    config: dict[str, Any]  # user config, plain values
    state: str = "running"
    created_at: float = 0.0
    heartbeat_at: float = 0.0
    entity: str = "neuralinternet"
    project: str = "opencompute"
    tags: list[str] = field(default_factory=list)
    internal: dict[str, Any] = field(default_factory=dict)  # the "_wandb" config value
    summary: dict[str, Any] = field(default_factory=dict)
    history_lines: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    config_writes: int = 0  # UpsertBucket requests that replaced the config

    @property
    def storage_id(self) -> str:
        return base64.b64encode(f"Run:v1:{self.run_id}:{self.project}:{self.entity}".encode()).decode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _lookup(run: FakeRun, key: str) -> Any:
    """The value a W&B filter key refers to, or _MISSING."""
    if key in ("display_name", "displayName"):
        return run.display_name
    if key == "name":
        return run.run_id
    if key == "state":
        return run.state
    if key in ("created_at", "createdAt"):
        return _iso(run.created_at)
    if key in ("heartbeat_at", "heartbeatAt"):
        return _iso(run.heartbeat_at)
    if not key.startswith("config."):
        return _MISSING
    parts = key.split(".")[1:]
    if len(parts) >= 2 and parts[1] == "value":  # "config.<key>.value.<nested>" is also accepted
        del parts[1]
    value: Any = run.config
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _compare(value: Any, op: str, arg: Any) -> bool:
    if op == "$exists":
        return (value is not _MISSING) == bool(arg)
    if value is _MISSING:
        return op in ("$ne", "$nin")
    if op == "$eq":
        return value == arg
    if op == "$ne":
        return value != arg
    if op == "$in":
        return value in arg
    if op == "$nin":
        return value not in arg
    try:
        return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]
    except (KeyError, TypeError):
        raise ValueError(f"unsupported filter operator {op}") from None


def matches(run: FakeRun, filters: Any) -> bool:
    """Evaluate a mongo-style W&B runs filter against one run."""
    if not filters:
        return True
    if not isinstance(filters, dict):
        raise ValueError("filters must be an object")
    for key, cond in filters.items():
        if key == "$and":
            ok = all(matches(run, sub) for sub in cond)
        elif key == "$or":
            ok = any(matches(run, sub) for sub in cond)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            value = _lookup(run, key)
            ok = all(_compare(value, op, arg) for op, arg in cond.items())
        else:
            value = _lookup(run, key)
            ok = value is not _MISSING and value == cond
        if not ok:
            return False
    return True


class FakeWandbGraphQL:
    """In-memory fake W&B GraphQL server; ``start()`` returns its base URL."""

    def __init__(self, entity: str = "neuralinternet", project: str = "opencompute") -> None:
        self.entity, self.project = entity, project
        self.runs: list[FakeRun] = []
        self.requests: Counter[str] = Counter()
        self.last_variables: dict[str, dict[str, Any]] = {}
        self.down_status: int | None = None
        self.rejected: dict[str, int] = {}
        self.unhandled: Counter[str] = Counter()
        self.clock = time.time
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- control

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                return body

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_POST(self) -> None:
                self._reply(*fake.handle(self.path, self._body()))

            def do_PUT(self) -> None:
                self._reply(*fake.handle_upload(self.path, self._body()))

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-wandb", daemon=True).start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def down(self, status: int = 503) -> None:
        """Fail every request with ``status`` until :meth:`up`."""
        self.down_status = status

    def up(self) -> None:
        self.down_status = None
        self.rejected.clear()

    def reject(self, operation: str, status: int = 400) -> None:
        """Fail only ``operation`` (e.g. ``UpsertBucket``) with ``status`` until :meth:`up`."""
        self.rejected[operation] = status

    def add_run(
        self,
        run_id: str,
        display_name: str,
        config: dict[str, Any],
        *,
        state: str = "running",
        created_at: float = 1_750_000_000.0,
        heartbeat_at: float | None = None,
    ) -> FakeRun:
        run = FakeRun(
            run_id,
            display_name,
            json.loads(json.dumps(config)),  # what a JSON round trip through the server leaves
            state,
            created_at,
            created_at if heartbeat_at is None else heartbeat_at,
            self.entity,
            self.project,
        )
        with self._lock:
            self.runs = [r for r in self.runs if r.run_id != run_id] + [run]
        return run

    def run(self, run_id: str) -> FakeRun | None:
        """The stored run with that id (name), or None."""
        with self._lock:
            return next((r for r in self.runs if r.run_id == run_id), None)

    def runs_named(self, display_name: str) -> list[FakeRun]:
        with self._lock:
            return [r for r in self.runs if r.display_name == display_name]

    # ---------------------------------------------------------------- protocol

    def handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        route = path.split("?")[0].rstrip("/")
        if route.endswith("/file_stream"):
            return self._file_stream(route, body)
        if route != "/graphql":
            return 200, {}  # e.g. wandb-core's OTEL metrics posts
        try:
            request = json.loads(body)
        except ValueError:
            return 400, {"errors": [{"message": "bad json"}]}
        match = _OPERATION.search(request.get("query") or "")
        operation = match.group(2) if match else "unknown"
        variables = request.get("variables") or {}
        with self._lock:
            self.requests[operation] += 1
            self.last_variables[operation] = variables
        status = self.down_status or self.rejected.get(operation)
        if status is not None:
            return status, {"errors": [{"message": "fake outage"}]}
        handler = self._handlers.get(operation)
        if handler is None:
            with self._lock:
                self.unhandled[operation] += 1
            return 200, {"data": {}}
        try:
            return 200, {"data": handler(self, variables)}
        except ValueError as exc:
            return 400, {"errors": [{"message": str(exc)}]}

    def handle_upload(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """``PUT`` to an upload URL that ``CreateRunFiles`` handed out."""
        with self._lock:
            self.requests["upload"] += 1
        if self.down_status is not None:
            return self.down_status, {}
        parts = path.split("?")[0].split("/")  # /_upload/<entity>/<project>/<run>/<file...>
        if len(parts) < 6 or parts[1] != "_upload":
            return 404, {}
        run = self.run(parts[4])
        if run is not None:
            with self._lock:
                run.files["/".join(parts[5:])] = body
        return 200, {}

    def _viewer(self, _variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "viewer": {
                "id": "VXNlcjox",
                "entity": self.entity,
                "username": "fake-user",
                "email": None,
                "flags": "{}",
                "teams": {"edges": [{"node": {"name": self.entity}}]},
            }
        }

    def _default_entity(self, _variables: dict[str, Any]) -> dict[str, Any]:
        return {"viewer": {"id": "VXNlcjox", "entity": self.entity}}

    def _server_info(self, _variables: dict[str, Any]) -> dict[str, Any]:
        return {"serverInfo": {"cliVersionInfo": {}, "latestLocalVersionInfo": None, "features": []}}

    def _project_ok(self, variables: dict[str, Any], project_key: str = "project") -> bool:
        entity = variables.get("entity") or self.entity
        return (entity, variables.get(project_key)) == (self.entity, self.project)

    def _find(self, variables: dict[str, Any]) -> FakeRun | None:
        storage_id = variables.get("id")
        with self._lock:
            for run in self.runs:
                if storage_id and run.storage_id == storage_id:
                    return run
                if not storage_id and run.run_id == variables.get("name"):
                    return run
        return None

    def _upsert_bucket(self, variables: dict[str, Any]) -> dict[str, Any]:
        run = self._find(variables)
        inserted = run is None
        if run is None:
            if variables.get("id"):
                raise ValueError("run not found")
            if not self._project_ok(variables):
                raise ValueError("project not found")
            now = self.clock()
            run = FakeRun(
                variables["name"], variables["name"], {}, "running", now, now, self.entity, self.project
            )
            with self._lock:
                self.runs.append(run)
        with self._lock:
            if variables.get("config") is not None:
                raw = json.loads(variables["config"])
                run.internal = (raw.pop("_wandb", None) or {}).get("value") or run.internal
                run.config = {k: v.get("value") for k, v in raw.items() if isinstance(v, dict)}
                run.config_writes += 1
            if variables.get("displayName") is not None or variables.get("display_name") is not None:
                run.display_name = variables.get("displayName") or variables.get("display_name")
            if variables.get("state"):
                run.state = variables["state"]
            if variables.get("summaryMetrics") is not None:
                run.summary = json.loads(variables["summaryMetrics"])
            run.heartbeat_at = self.clock()
            if not inserted and run.state != "running" and variables.get("config") is not None:
                run.state = "running"  # a resumed run is running again
        return {
            "upsertBucket": {
                "bucket": {
                    **_node(run),
                    "sweepName": None,
                    "project": {
                        "id": "UHJvamVjdDox",
                        "name": run.project,
                        "entity": {"id": "RW50aXR5OjE=", "name": run.entity},
                    },
                },
                "inserted": inserted,
            }
        }

    def _resume_status(self, variables: dict[str, Any]) -> dict[str, Any]:
        if not self._project_ok(variables):
            return {"model": None}
        run = self._find({"name": variables.get("name")})
        bucket = None
        if run is not None:
            node = _node(run)
            bucket = {
                "id": run.storage_id,
                "name": run.run_id,
                "displayName": run.display_name,
                "summaryMetrics": json.dumps(run.summary),
                "logLineCount": 0,
                "historyLineCount": run.history_lines,
                "eventsLineCount": 0,
                "historyTail": "[]",
                "eventsTail": "[]",
                "config": node["config"],
                "tags": run.tags,
                "notes": None,
                "wandbConfig": json.dumps({"t": run.internal["t"]} if "t" in run.internal else {}),
            }
        return {
            "model": {
                "id": "UHJvamVjdDox",
                "name": self.project,
                "entity": {"id": "RW50aXR5OjE=", "name": self.entity},
                "bucket": bucket,
            }
        }

    def _create_run_files(self, variables: dict[str, Any]) -> dict[str, Any]:
        run = self._find({"name": variables.get("run")})
        if run is None:
            raise ValueError("run not found")
        base = f"{self.base_url}/_upload/{run.entity}/{run.project}/{run.run_id}"
        return {
            "createRunFiles": {
                "runID": run.storage_id,
                "uploadHeaders": [],
                "files": [
                    {"name": name, "uploadUrl": f"{base}/{name}"} for name in variables.get("files") or []
                ],
            }
        }

    def _mark_uploaded(self, _variables: dict[str, Any]) -> dict[str, Any]:
        return {"markRunFilesUploaded": {"success": True}}

    def _run_query(self, variables: dict[str, Any]) -> dict[str, Any] | None:
        if not self._project_ok(variables):
            return {"project": None}
        run = self._find({"name": variables.get("name")})
        return {"project": {"run": _node(run) if run is not None else None}}

    def _file_stream(self, route: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests["file_stream"] += 1
        if self.down_status is not None:
            return self.down_status, {}
        parts = route.split("/")  # /files/<entity>/<project>/<run>/file_stream
        run = self.run(parts[-2]) if len(parts) >= 6 else None
        if run is None:
            return 404, {"error": "run not found"}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error": "bad json"}
        with self._lock:
            history = (request.get("files") or {}).get("wandb-history.jsonl") or {}
            run.history_lines += len(history.get("content") or [])
            run.heartbeat_at = self.clock()
            if request.get("complete"):
                run.state = "finished" if not request.get("exitcode") else "failed"
            else:
                run.state = "running"
        return 200, {}

    def _runs_query(self, variables: dict[str, Any]) -> dict[str, Any]:
        return {"project": self._runs_page(variables)}

    _handlers = {
        "Viewer": _viewer,
        "GetDefaultEntity": _default_entity,
        "ServerInfo": _server_info,
        "ServerFeaturesQuery": _server_info,
        "Runs": _runs_query,
        "Run": _run_query,
        "RunResumeStatus": _resume_status,
        "UpsertBucket": _upsert_bucket,
        "CreateRunFiles": _create_run_files,
        "MarkRunFilesUploaded": _mark_uploaded,
    }

    def _runs_page(self, variables: dict[str, Any]) -> dict[str, Any] | None:
        if (variables.get("entity"), variables.get("project")) != (self.entity, self.project):
            return None  # the client then raises "Could not find project"
        filters = json.loads(variables.get("filters") or "{}")
        with self._lock:
            selected = [r for r in self.runs if matches(r, filters)]
        selected = _ordered(selected, variables.get("order") or "+created_at")
        start = int(base64.b64decode(variables["cursor"]).decode()) if variables.get("cursor") else 0
        per_page = int(variables.get("perPage") or 50)
        page = selected[start : start + per_page]
        edges = [
            {"node": _node(run), "cursor": base64.b64encode(str(start + i + 1).encode()).decode()}
            for i, run in enumerate(page)
        ]
        return {
            "internalId": "UHJvamVjdDox",
            "runCount": len(selected),
            "readOnly": False,
            "runs": {
                "edges": edges,
                "pageInfo": {
                    "endCursor": edges[-1]["cursor"] if edges else None,
                    "hasNextPage": start + per_page < len(selected),
                },
            },
        }


class _QuietServer(ThreadingHTTPServer):
    """wandb-core drops idle keep-alive connections at exit: not an error worth a traceback."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _ordered(runs: list[FakeRun], order: str) -> list[FakeRun]:
    descending = order.startswith("-")
    key = order.lstrip("+-")
    attr = "heartbeat_at" if key in ("heartbeat_at", "heartbeatAt") else "created_at"
    return sorted(runs, key=lambda r: getattr(r, attr), reverse=descending)


def _node(run: FakeRun) -> dict[str, Any]:
    config = {"_wandb": {"value": run.internal or {"cli_version": "0.31.0"}, "desc": None}}
    config.update({k: {"value": v, "desc": None} for k, v in run.config.items()})
    return {
        "projectId": 1,
        "id": run.storage_id,
        "tags": run.tags,
        "name": run.run_id,
        "displayName": run.display_name,
        "sweepName": None,
        "state": run.state,
        "config": json.dumps(config),
        "group": None,
        "jobType": None,
        "commit": None,
        "readOnly": False,
        "createdAt": _iso(run.created_at),
        "heartbeatAt": _iso(run.heartbeat_at),
        "description": None,
        "notes": None,
        "systemMetrics": "{}",
        "summaryMetrics": json.dumps(run.summary),
        "historyLineCount": run.history_lines,
        "user": {"name": "fake-user", "username": "fake-user"},
        "historyKeys": None,
    }


# --------------------------------------------------------------------------- offline run files

_BLOCK = 32 * 1024
_HEADER = 7  # ":W&B" + magic 0xBEE1 + version byte
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(data: bytes) -> list[bytes]:
    """Split LevelDB-log framing (crc32c(4) + len(2) + type(1) per chunk, 32 KiB blocks)."""
    out: list[bytes] = []
    pos, partial = _HEADER, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:
            pos += left  # block trailer padding
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            out.append(chunk)
        elif kind == _FIRST:
            partial = chunk
        elif kind == _MIDDLE:
            partial += chunk
        elif kind == _LAST:
            out.append(partial + chunk)
            partial = b""
    return out


def read_offline_run(path: str | Path) -> FakeRun:
    """The run id, display name and final config recorded in a real offline ``run-<id>.wandb``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if not data.startswith(b":W&B"):
        raise ValueError(f"{path} is not a wandb run file")
    run_id, name, config = "", "", {}
    for raw in _records(data):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run_id, name = record.run.run_id, record.run.display_name
            _apply(config, record.run.config)
        elif kind == "config":
            _apply(config, record.config)
    config.pop("_wandb", None)
    return FakeRun(run_id, name, config)


def _apply(config: dict[str, Any], record: Any) -> None:
    for item in record.update:
        keys = list(item.nested_key) or [item.key]
        target = config
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = json.loads(item.value_json)
    for item in record.remove:
        config.pop(item.key, None)
