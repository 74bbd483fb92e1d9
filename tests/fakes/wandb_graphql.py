"""A FAKE of the WandB GraphQL endpoint, for tests only. It is not WandB.

Why a fake: the real ``wandb.Api`` client (wandb 0.31, which routes GraphQL through its Go
``wandb-core`` process) must be exercised end to end, and a real W&B server needs docker and the
network. This stdlib HTTP server on ``127.0.0.1:0`` answers exactly what the client sends
(read from ``wandb/apis/public/api.py`` and ``runs.py``):

- ``Viewer`` (``wandb.Api()`` verifies credentials eagerly) and ``GetDefaultEntity``;
- ``Runs($project, $entity, $cursor, $perPage, $order, $filters)`` with the full
  ``RunFragment`` (``lazy=False``) or the lightweight one: mongo-style ``filters``
  (``$and``, ``$or``, ``$exists``, ``$in``, ``$nin``, ``$ne``, ``$gt``/``$gte``/``$lt``/``$lte``,
  equality) on ``config.<key>[.<nested>]``, ``display_name``, ``name``, ``state``;
  ``order`` by ``created_at``/``heartbeat_at``; cursor pagination
  (``edges{node,cursor}``, ``pageInfo{endCursor,hasNextPage}``) and ``runCount``;
- anything else (OTEL metrics posts, unknown queries): an empty ``data`` object.

Runs live in memory, configs stored the way W&B stores them (``{"key": {"value": ...}}``).
``down(status)`` makes every GraphQL request fail with that HTTP status, to simulate outages;
``requests`` counts requests by operation name.

``read_offline_run(path)`` decodes a ``run-<id>.wandb`` file written by wandb's *real* offline
mode (LevelDB-log framing of ``wandb_internal_pb2.Record``), so a test can load exactly what a
``wandb sync`` would have uploaded into this fake.
"""

from __future__ import annotations

import base64
import json
import re
import struct
import threading
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
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---------------------------------------------------------------- control

    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload = fake.handle(self.path, body)
                out = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
        """Fail every GraphQL request with ``status`` until :meth:`up`."""
        self.down_status = status

    def up(self) -> None:
        self.down_status = None

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

    # ---------------------------------------------------------------- protocol

    def handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if path.rstrip("/") != "/graphql":
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
        if self.down_status is not None:
            return self.down_status, {"errors": [{"message": "fake outage"}]}
        if operation == "Viewer":
            return 200, {"data": {"viewer": self._viewer()}}
        if operation == "GetDefaultEntity":
            return 200, {"data": {"viewer": {"id": "VXNlcjox", "entity": self.entity}}}
        if operation == "Runs":
            try:
                return 200, {"data": {"project": self._runs_page(variables)}}
            except ValueError as exc:
                return 400, {"errors": [{"message": str(exc)}]}
        return 200, {"data": {}}

    def _viewer(self) -> dict[str, Any]:
        return {
            "id": "VXNlcjox",
            "entity": self.entity,
            "username": "fake-user",
            "flags": "{}",
            "teams": {"edges": [{"node": {"name": self.entity}}]},
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


def _ordered(runs: list[FakeRun], order: str) -> list[FakeRun]:
    descending = order.startswith("-")
    key = order.lstrip("+-")
    attr = "heartbeat_at" if key in ("heartbeat_at", "heartbeatAt") else "created_at"
    return sorted(runs, key=lambda r: getattr(r, attr), reverse=descending)


def _node(run: FakeRun) -> dict[str, Any]:
    config = {"_wandb": {"value": {"cli_version": "0.31.0"}, "desc": None}}
    config.update({k: {"value": v, "desc": None} for k, v in run.config.items()})
    return {
        "projectId": 1,
        "id": base64.b64encode(f"Run:v1:{run.run_id}:{run.project}:{run.entity}".encode()).decode(),
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
        "summaryMetrics": "{}",
        "historyLineCount": 0,
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
