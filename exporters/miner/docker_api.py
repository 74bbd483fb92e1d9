"""A minimal, read-only Docker Engine API client over the unix socket (stdlib only).

Why not the ``docker`` SDK for Python: it pulls in ``requests``-over-unix adapters, ``urllib3``
pinning and a ``paramiko``/``websocket`` surface for a job that needs two GET endpoints, and its
client object can do anything the daemon can (``containers.run``, ``exec``...). This client can
only send ``GET``: :meth:`DockerEngine._get` hard-codes the method, and it exposes exactly
``/version``, ``/containers/json`` and ``/containers/{id}/json``. Every request has a connect and
read timeout, bodies are capped, and failures become a :class:`DockerError` with a bounded
``reason`` (``socket_missing``, ``permission_denied``, ``error``). Docker is never run, only read.

The API version is negotiated like the SDK's ``version="auto"``: one unversioned ``GET /version``
gives the daemon's ``ApiVersion``, then every path is prefixed ``/v<ApiVersion>`` (Docker 29 refuses
versions older than 1.44, so a fixed old prefix would break on new daemons).
"""

from __future__ import annotations

import errno
import http.client
import json
import re
import socket
from typing import Any

DEFAULT_SOCKET = "/var/run/docker.sock"
MAX_BODY_BYTES = 8 * 1024 * 1024
_CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")

#: Every value :attr:`DockerError.reason` can take.
DOCKER_REASONS = ("socket_missing", "permission_denied", "error")


class DockerError(Exception):
    """The Docker Engine API could not be read; ``reason`` is one of :data:`DOCKER_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over an AF_UNIX stream socket, with the same timeout for connect and reads."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)  # the Host header the docker CLI sends
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DockerEngine:
    """Read-only access to one Docker daemon's socket; safe to call from one background thread."""

    def __init__(self, socket_path: str = DEFAULT_SOCKET, *, timeout: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.api_version: str | None = None

    def running_containers(self) -> dict[str, str]:
        """``{container id: name}`` of the running containers (``GET /containers/json``)."""
        body = self._json(f"{self._prefix()}/containers/json")
        if not isinstance(body, list):
            raise DockerError("error", "GET /containers/json: expected a JSON list")
        found = {}
        for entry in body:
            cid = entry.get("Id") if isinstance(entry, dict) else None
            names = entry.get("Names") if isinstance(entry, dict) else None
            if isinstance(cid, str) and _CONTAINER_ID.match(cid):
                found[cid] = _name(names[0] if isinstance(names, list) and names else "")
        return found

    def container_name(self, container_id: str) -> str | None:
        """The name of one container (running or not); None when the daemon does not know the id."""
        if not _CONTAINER_ID.match(container_id):
            raise ValueError(f"not a full container id: {container_id!r}")
        status, raw = self._get(f"{self._prefix()}/containers/{container_id}/json")
        if status == 404:
            return None
        body = _decode(status, raw, "GET /containers/{id}/json")
        return _name(body.get("Name", "")) if isinstance(body, dict) else ""

    def _prefix(self) -> str:
        if self.api_version is None:
            body = self._json("/version")
            version = body.get("ApiVersion") if isinstance(body, dict) else None
            if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+", version):
                raise DockerError("error", f"GET /version: no usable ApiVersion ({version!r})")
            self.api_version = version
        return f"/v{self.api_version}"

    def _json(self, path: str) -> Any:
        status, raw = self._get(path)
        return _decode(status, raw, f"GET {path}")

    def _get(self, path: str) -> tuple[int, bytes]:
        """The only request this client can make: a GET, with timeouts and a capped body."""
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            conn.request("GET", path, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            raw = resp.read(MAX_BODY_BYTES + 1)
            if len(raw) > MAX_BODY_BYTES:
                raise DockerError("error", f"GET {path}: response larger than {MAX_BODY_BYTES} bytes")
            return resp.status, raw
        except FileNotFoundError:
            raise DockerError("socket_missing", f"no Docker socket at {self.socket_path}") from None
        except PermissionError:
            raise DockerError(
                "permission_denied",
                f"permission denied on {self.socket_path} (add the exporter's user to the docker group)",
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ECONNREFUSED, errno.ENOTSOCK):
                raise DockerError(
                    "error", f"Docker daemon not answering on {self.socket_path}: {exc}"
                ) from None
            raise DockerError("error", f"GET {path} on {self.socket_path}: {exc}") from None
        except http.client.HTTPException as exc:
            raise DockerError("error", f"GET {path}: bad HTTP response: {exc!r}") from None
        finally:
            conn.close()


def _decode(status: int, raw: bytes, what: str) -> Any:
    if status != 200:
        raise DockerError("error", f"{what}: HTTP {status}: {raw[:200]!r}")
    try:
        return json.loads(raw)
    except ValueError:
        raise DockerError("error", f"{what}: malformed JSON") from None


def _name(value: Any) -> str:
    """Docker reports names with a leading slash (``/ssh-container``)."""
    return value.removeprefix("/") if isinstance(value, str) else ""
