"""FAKE Docker Engine API: an HTTP/1.1 server on a unix socket that answers like ``dockerd``.

A fake at the vendor boundary, for machines without Docker. It serves the read-only endpoints the
miner exporter's client uses, with the daemon's shapes and status codes (Engine API v1.47):

* ``GET /_ping``: ``200 OK`` body ``OK`` with ``API-Version``, ``Ostype``, ``Docker-Experimental``;
* ``GET /version`` (also versioned): ``Version``, ``ApiVersion``, ``MinAPIVersion``, ``Os``...;
* ``GET /v<ver>/containers/json``: the running containers, ``[{"Id", "Names": ["/name"], "Image",
  "State", "Status", "Labels", ...}]`` (``?all=1`` adds stopped ones);
* ``GET /v<ver>/containers/<id>/json``: ``{"Id", "Name": "/name", "State": {...}, ...}``, or
  ``404 {"message": "No such container: <id>"}``.

A versioned path outside ``MinAPIVersion..ApiVersion`` gets the daemon's ``400`` ("client version
1.99 is too new..."), unknown routes ``404 {"message": "page not found"}``, and any non-GET method
``405`` after being recorded in :attr:`FakeDockerEngine.requests` (so tests can assert that the
client only ever sends GET). ``delay`` stalls every answer (timeouts); ``fail_status`` answers
every request with that status (a broken daemon).
"""

from __future__ import annotations

import json
import re
import socketserver
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"


@dataclass
class FakeContainer:
    id: str
    name: str
    running: bool = True
    image: str = "ubuntu:22.04"


@dataclass
class FakeDockerEngine:
    """Serve the fake on ``socket_path`` (a background thread) until :meth:`close`."""

    socket_path: Path
    containers: list[FakeContainer] = field(default_factory=list)
    api_version: str = API_VERSION
    delay: float = 0.0
    fail_status: int | None = None
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        engine = self

        class Handler(_Handler):
            fake = engine

        self._server = socketserver.ThreadingUnixStreamServer(str(self.socket_path), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.socket_path.unlink(missing_ok=True)

    def paths(self) -> list[str]:
        return [path for _, path in self.requests]

    def _list(self, all_: bool) -> list[dict[str, Any]]:
        return [
            {
                "Id": c.id,
                "Names": [f"/{c.name}"],
                "Image": c.image,
                "ImageID": "sha256:" + "ab" * 32,
                "Command": "/usr/sbin/sshd -D",
                "Created": 1_700_000_000,
                "Ports": [],
                "Labels": {},
                "State": "running" if c.running else "exited",
                "Status": "Up 2 hours" if c.running else "Exited (0) 1 hour ago",
                "HostConfig": {"NetworkMode": "bridge"},
                "NetworkSettings": {"Networks": {}},
                "Mounts": [],
            }
            for c in self.containers
            if c.running or all_
        ]

    def _inspect(self, cid: str) -> dict[str, Any] | None:
        for c in self.containers:
            if c.id == cid or (len(cid) >= 12 and c.id.startswith(cid)) or c.name == cid:
                return {
                    "Id": c.id,
                    "Created": "2023-11-14T22:13:20.000000000Z",
                    "Path": "/usr/sbin/sshd",
                    "Args": ["-D"],
                    "State": {
                        "Status": "running" if c.running else "exited",
                        "Running": c.running,
                        "Pid": 4242,
                    },
                    "Image": "sha256:" + "ab" * 32,
                    "Name": f"/{c.name}",
                    "Config": {"Image": c.image, "Labels": {}},
                }
        return None

    def _version(self) -> dict[str, Any]:
        return {
            "Platform": {"Name": "Docker Engine - Community"},
            "Version": "27.3.1",
            "ApiVersion": self.api_version,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "41ca978",
            "GoVersion": "go1.22.7",
            "Os": "linux",
            "Arch": "amd64",
            "KernelVersion": "6.1.0-27-amd64",
        }


def _ver(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDockerEngine
    protocol_version = "HTTP/1.1"
    server_version = "Docker/27.3.1 (linux)"

    def address_string(self) -> str:  # a unix socket peer has no host/port
        return "unix"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.fake.requests.append(("GET", self.path))
        if self.fake.delay:
            threading.Event().wait(self.fake.delay)
        if self.fake.fail_status is not None:
            return self._send(self.fake.fail_status, {"message": "injected failure"})
        url = urlsplit(self.path)
        path = url.path
        m = re.match(r"^/v(\d+\.\d+)(/.*)$", path)
        if m:
            asked, path = m.group(1), m.group(2)
            if _ver(asked) > _ver(self.fake.api_version):
                return self._send(
                    400,
                    {"message": f"client version {asked} is too new. Maximum supported API version is "
                     f"{self.fake.api_version}"},
                )  # fmt: skip
            if _ver(asked) < _ver(MIN_API_VERSION):
                return self._send(
                    400,
                    {"message": f"client version {asked} is too old. Minimum supported API version is "
                     f"{MIN_API_VERSION}, please upgrade your client to a newer version"},
                )  # fmt: skip
        if path == "/_ping":
            return self._send(200, b"OK", content_type="text/plain; charset=utf-8")
        if path == "/version":
            return self._send(200, self.fake._version())
        if path == "/containers/json":
            all_ = parse_qs(url.query).get("all", ["0"])[0] in ("1", "true", "True")
            return self._send(200, self.fake._list(all_))
        m = re.match(r"^/containers/([^/]+)/json$", path)
        if m:
            found = self.fake._inspect(m.group(1))
            if found is None:
                return self._send(404, {"message": f"No such container: {m.group(1)}"})
            return self._send(200, found)
        self._send(404, {"message": "page not found"})

    def _refuse(self) -> None:
        self.fake.requests.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._send(405, {"message": "method not allowed by the fake"})

    do_POST = do_PUT = do_DELETE = do_HEAD = _refuse

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Api-Version", self.fake.api_version)
        self.send_header("Docker-Experimental", "false")
        self.send_header("Ostype", "linux")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
