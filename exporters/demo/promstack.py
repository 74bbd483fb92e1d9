"""A throwaway Prometheus + Alertmanager on loopback, and a webhook receiver for its alerts.

Used by the demo and by the end-to-end tests. Everything binds to 127.0.0.1 on non-default
ports, keeps its data under one directory, and disables Alertmanager's gossip port
(``--cluster.listen-address=``), so it never clashes with a Prometheus packaged service on the
same host (Debian's postinst enables one on :9090/:9093/:9094).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

PROMETHEUS_NAMES = ("prometheus",)
ALERTMANAGER_NAMES = ("prometheus-alertmanager", "alertmanager")


def find_binary(names: Iterable[str], path: str | None = None) -> str | None:
    """The first of ``names`` found on ``path`` (default ``$PATH``); None when not installed."""
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def _duration(seconds: float) -> str:
    """Seconds as a Prometheus duration string (``1s``, ``500ms``, ``2m``)."""
    ms = round(seconds * 1000)
    if ms % 60000 == 0:
        return f"{ms // 60000}m"
    if ms % 1000 == 0:
        return f"{ms // 1000}s"
    return f"{ms}ms"


def prometheus_config(
    targets: Mapping[str, str | Sequence[str]],
    *,
    rule_files: Iterable[Path] = (),
    alertmanager: str | None = None,
    scrape_interval: float = 5.0,
    evaluation_interval: float = 5.0,
) -> dict[str, Any]:
    """A prometheus.yml as a dict: one job per ``{job: address(es)}``, rules, one Alertmanager."""
    cfg: dict[str, Any] = {
        "global": {
            "scrape_interval": _duration(scrape_interval),
            "scrape_timeout": _duration(min(scrape_interval, 10.0)),
            "evaluation_interval": _duration(evaluation_interval),
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job,
                "static_configs": [{"targets": [address] if isinstance(address, str) else list(address)}],
            }
            for job, address in targets.items()
        ],
    }
    if alertmanager:
        cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return cfg


def alertmanager_config(
    webhook_url: str,
    *,
    group_wait: float = 1.0,
    group_interval: float = 5.0,
    repeat_interval: float = 3600.0,
) -> dict[str, Any]:
    """An alertmanager.yml routing every alert to one webhook, resolved notifications included."""
    return {
        "route": {
            "receiver": "demo-webhook",
            "group_by": ["alertname", "hotkey"],
            "group_wait": _duration(group_wait),
            "group_interval": _duration(group_interval),
            "repeat_interval": _duration(repeat_interval),
        },
        "receivers": [
            {
                "name": "demo-webhook",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }


def shipped_alertmanager_config(
    source: Path,
    webhook_url: str,
    *,
    group_wait: float = 1.0,
    group_interval: float = 5.0,
    repeat_interval: float = 3600.0,
) -> dict[str, Any]:
    """``deploy/alertmanager/alertmanager.yml`` with its routing tree and inhibit rules kept.

    Only what cannot work on a demo or test host changes: every webhook goes to ``webhook_url``
    (with the receiver's name as the path, so a delivery says where it was routed), and the
    route timings are compressed like the rules' ``for:``. The ``null`` receiver stays empty, so
    info alerts are not delivered, exactly as in production.
    """
    data = yaml.safe_load(source.read_text()) or {}
    base = webhook_url.rstrip("/")
    for receiver in data.get("receivers") or []:
        for hook in receiver.get("webhook_configs") or []:
            hook["url"] = f"{base}/{receiver['name']}"
    timings = {
        "group_wait": _duration(group_wait),
        "group_interval": _duration(group_interval),
        "repeat_interval": _duration(repeat_interval),
    }

    def compress(route: dict[str, Any]) -> None:
        for key, value in timings.items():
            if key in route or route is data.get("route"):
                route[key] = value
        for child in route.get("routes") or []:
            compress(child)

    compress(data.setdefault("route", {}))
    data.setdefault("global", {})["resolve_timeout"] = _duration(max(group_interval * 5, 5.0))
    return data


def write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as YAML (block style, insertion order) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False))
    return path


def prometheus_argv(binary: str, config: Path, data_dir: Path, listen: str) -> list[str]:
    """Command line for a loopback Prometheus with its TSDB under ``data_dir``."""
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        "--storage.tsdb.retention.time=1d",
        f"--web.listen-address={listen}",
        f"--web.external-url=http://{listen}/",
        "--web.enable-lifecycle",
        "--log.level=warn",
    ]


def alertmanager_argv(
    binary: str,
    config: Path,
    data_dir: Path,
    listen: str,
    *,
    cluster_listen: str = "",
    peers: Iterable[str] = (),
    peer_timeout: float = 15.0,
) -> list[str]:
    """Command line for a loopback Alertmanager; no gossip port unless ``cluster_listen`` is set.

    With ``cluster_listen`` (and ``peers``) the Alertmanagers form one cluster: they share
    silences and the notification log, so only one of them sends each notification.
    """
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data_dir}",
        f"--web.listen-address={listen}",
        f"--web.external-url=http://{listen}/",
        f"--cluster.listen-address={cluster_listen}",
        "--log.level=warn",
    ]
    if cluster_listen:
        argv += [
            f"--cluster.advertise-address={cluster_listen}",
            f"--cluster.peer-timeout={_duration(peer_timeout)}",
        ]
        argv += [f"--cluster.peer={peer}" for peer in peers]
    return argv


@dataclass
class Notification:
    """One Alertmanager webhook delivery (payload version 4), reduced to what we look at."""

    status: str  # firing | resolved (of the group)
    receiver: str
    alerts: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def alert_states(self) -> list[tuple[str, str, dict[str, str]]]:
        """(alertname, status, labels) for every alert in the delivery."""
        return [
            (a.get("labels", {}).get("alertname", ""), a.get("status", ""), a.get("labels", {}))
            for a in self.alerts
        ]


class WebhookReceiver:
    """A tiny HTTP server that accepts Alertmanager webhook POSTs and hands them to a callback.

    It keeps every notification in ``notifications`` (thread-safe) so callers can wait on them.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_notification: Callable[[Notification], None] | None = None,
    ) -> None:
        self.notifications: list[Notification] = []
        self._cond = threading.Condition()
        self._callback = on_notification
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    payload = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self.send_response(400)
                    self.end_headers()
                    return
                receiver._record(payload)
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug("webhook %s", format % args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, payload: dict[str, Any]) -> None:
        note = Notification(
            status=str(payload.get("status", "")),
            receiver=str(payload.get("receiver", "")),
            alerts=list(payload.get("alerts") or []),
            raw=payload,
        )
        with self._cond:
            self.notifications.append(note)
            self._cond.notify_all()
        if self._callback is not None:
            try:
                self._callback(note)
            except Exception:
                log.exception("webhook callback failed")

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], status: str, timeout: float
    ) -> dict[str, Any] | None:
        """The first alert with ``status`` that matches ``predicate``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.notifications:
                    for alert in note.alerts:
                        if alert.get("status") == status and predicate(alert):
                            return alert
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
