"""HTTP serving in node_exporter style: landing page, telemetry path, /health, TLS, basic auth.

prometheus_client's WSGI app does the exposition (content negotiation incl. OpenMetrics, gzip);
this module adds the routes around it and the exporter-toolkit web config (it has no server-side
basic auth of its own).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from exporters.core.collector import ScrapeCollector
from exporters.core.webconfig import WebConfig

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response, or a failed TLS handshake, is not our error.
        log.debug("http client error from %s", client_address, exc_info=True)


class _IPv6Server(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http %s", format % args)


def build_app(
    registry: CollectorRegistry,
    *,
    exporter: str,
    telemetry_path: str = "/metrics",
    web_config: WebConfig | None = None,
    scrape: ScrapeCollector | None = None,
) -> WSGIApp:
    """The exporter's WSGI app: ``/``, telemetry path, ``/health``, behind optional basic auth."""
    metrics_app = make_wsgi_app(registry)
    landing = _landing_page(exporter, telemetry_path)
    cfg = web_config or WebConfig()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if cfg.basic_auth_users and not _authorized(cfg, environ):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="opencompute"')],
            )
            return [b"Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return metrics_app(environ, start_response)
        if path == "/health":
            return _health(scrape, start_response)
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [landing]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"Not Found\n"]

    return app


def _authorized(cfg: WebConfig, environ: dict[str, Any]) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return False
    try:
        user, sep, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return bool(sep) and cfg.check_basic_auth(user, password)


def _health(scrape: ScrapeCollector | None, start_response: StartResponse) -> list[bytes]:
    status = scrape.status if scrape is not None else None
    body: dict[str, Any] = {"status": "ok"}
    code = "200 OK"
    if status is not None and status.finished_at is not None:
        body["last_scrape_timestamp_seconds"] = status.finished_at
        body["failed_collectors"] = status.failed
        if not status.ok:
            body["status"] = "degraded"
            code = "503 Service Unavailable"
    start_response(code, [("Content-Type", "application/json")])
    return [json.dumps(body).encode() + b"\n"]


def _landing_page(exporter: str, telemetry_path: str) -> bytes:
    name = html.escape(f"opencompute {exporter} exporter")
    path = html.escape(telemetry_path)
    return (
        f"<!DOCTYPE html><html><head><title>{name}</title></head><body>"
        f"<h1>{name}</h1><p>NI Compute Subnet (SN27) metrics for Prometheus.</p>"
        f'<ul><li><a href="{path}">Metrics</a></li><li><a href="/health">Health</a></li></ul>'
        "</body></html>\n"
    ).encode()


class HTTPServer:
    """A threaded WSGI server on (host, port), with TLS when the web config asks for it."""

    def __init__(self, app: WSGIApp, host: str, port: int, web_config: WebConfig | None = None) -> None:
        server_class = _IPv6Server if ":" in host else _ThreadingWSGIServer
        self._server = make_server(host, port, app, server_class, handler_class=_QuietHandler)
        cfg = web_config or WebConfig()
        self.tls = cfg.tls is not None
        if cfg.tls is not None:
            ctx = cfg.tls.ssl_context()
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.server_close()
