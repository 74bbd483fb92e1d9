"""HTTP serving in node_exporter style: landing page, telemetry path, /health, TLS, basic auth.

prometheus_client's WSGI app does the exposition (content negotiation incl. OpenMetrics, gzip);
this module adds the routes around it, the exporter-toolkit web config (prometheus_client has no
server-side basic auth of its own), node_exporter's ``--web.max-requests`` bound and a
single-flight collection shared by concurrent scrapes.

The server is cheroot (CherryPy's WSGI server), chosen by measurement over the stdlib's
``wsgiref`` (backlog 5, HTTP/1.0, a thread per idle connection, TLS handshake in the accept loop)
and uvicorn (asyncio: TLS is fine, but a collection running in the event loop stalls every
other request, /health included). cheroot gives HTTP/1.1 keep-alive, a fixed worker pool, idle
connections parked in a selector without a thread, and timeouts; see benchmarks/bench_serving.py.
Its own TLS adapter handshakes in the accept loop, so :class:`_LazyTLSAdapter` defers the
handshake to the worker that first reads the connection, under a timeout.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import html
import json
import logging
import queue
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs

from cheroot import wsgi
from cheroot.makefile import StreamReader, StreamWriter
from cheroot.server import HTTPConnection
from cheroot.ssl import Adapter
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted

from exporters import __version__
from exporters.core.collector import ScrapeCollector
from exporters.core.webconfig import WebConfig

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
HealthSource = Callable[[], dict[str, Any]]
T = TypeVar("T")

DEFAULT_MAX_REQUESTS = 40  # node_exporter's --web.max-requests default
READ_TIMEOUT = 10.0  # seconds a started request (or a TLS handshake) may pause between reads
IDLE_TIMEOUT = 120.0  # seconds a keep-alive connection may sit idle (Prometheus scrapes every 15-60 s)
BACKLOG = 1024
SHUTDOWN_TIMEOUT = 2.0
SLOT_WAIT = 1.0  # seconds a scrape beyond --web.max-requests waits for a slot before its 503


class SharedScrape:
    """Concurrent scrapes wait for the one collection in flight and share its rendered output.

    A scrape that arrives while another is collecting gets that collection's result instead of
    starting its own (nvidia_gpu_exporter does the same), and scrapes of one flight asking for
    the same format and compression share the encoded bytes too: 50 scrapers cost one
    collection and one rendering at a time, not 50. A scrape arriving after the flight finished
    starts a fresh one: nothing is cached between flights.

    Collection and rendering run on one dedicated thread, not in whichever server worker led
    the flight: glibc gives each thread its own malloc arena, and the validator's per-read
    SQLite page cache and 200 KiB bodies allocated in 50 different threads grew RSS by ~45 MB
    and kept creeping (measured; see benchmarks/bench_serving.py). The server's workers only
    move bytes.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._flight: _Flight | None = None
        self._worker = _Worker("collect")

    def render(self, accept: str, gzipped: bool) -> tuple[bytes, str]:
        """(body, content type) for the Accept header; raises what the collection raised."""
        flight = self._join()
        encoder, content_type = choose_encoder(accept)
        key = (content_type, gzipped)
        with flight.render_lock:
            body = flight.rendered.get(key)
            if body is None:
                body = self._worker.call(lambda: _encode(encoder, flight.families, gzipped))
                flight.rendered[key] = body
        return body, content_type

    def _join(self) -> _Flight:
        with self._lock:
            flight, leader = self._flight, False
            if flight is None:
                flight = self._flight = _Flight()
                leader = True
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise RuntimeError("the shared collection failed") from flight.error
            return flight
        try:
            flight.families = self._worker.call(lambda: list(self._registry.collect()))
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()
        return flight


def _encode(encoder: Callable[[Any], bytes], families: list[Metric], gzipped: bool) -> bytes:
    body = encoder(_Families(families))
    return gzip.compress(body, compresslevel=6) if gzipped else body


class _Worker:
    """One daemon thread running calls in order (a daemon: a hung collection never blocks exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def call(self, fn: Callable[[], T]) -> T:
        future: Future[T] = Future()
        self._jobs.put((fn, future))
        return future.result()

    def _run(self) -> None:
        while True:
            fn, future = self._jobs.get()
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting scrape, which reports it
                future.set_exception(exc)


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.families: list[Metric] = []
        self.error: BaseException | None = None
        self.render_lock = threading.Lock()
        self.rendered: dict[tuple[str, bool], bytes] = {}


class _Families:
    """What an encoder reads: the families of one flight."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@dataclass(frozen=True)
class Landing:
    """What the landing page says about this process: what runs, where its state goes, where
    its metrics are documented (node_exporter's landing page shows version and links too)."""

    collectors: Sequence[str] = ()
    loops: Sequence[str] = ()
    settings: Mapping[str, str] = field(default_factory=dict)  # e.g. {"state backend": "wandb"}
    docs: str | None = None  # this exporter's metrics reference, e.g. docs/metrics/miner.md


def build_app(
    registry: CollectorRegistry,
    *,
    exporter: str,
    telemetry_path: str = "/metrics",
    web_config: WebConfig | None = None,
    scrape: ScrapeCollector | None = None,
    max_requests: int = DEFAULT_MAX_REQUESTS,
    health: HealthSource | None = None,
    slot_wait: float = SLOT_WAIT,
    landing_info: Landing | None = None,
) -> WSGIApp:
    """The exporter's WSGI app: ``/``, telemetry path, ``/health``, behind optional basic auth.

    At most ``max_requests`` scrapes run at once (0: no bound), as node_exporter's
    ``--web.max-requests``; one beyond it waits up to ``slot_wait`` for a slot (scrapes of one
    flight finish together, so a burst drains in milliseconds), then gets 503. ``health`` adds
    entries (background loops) to ``/health``; a true ``"degraded"`` among them makes it 503.
    """
    shared = SharedScrape(registry)
    filtered_app = make_wsgi_app(registry)  # ?name[]= selects families: served unshared
    landing = _landing_page(exporter, telemetry_path, landing_info or Landing())
    cfg = web_config or WebConfig()
    slots = threading.BoundedSemaphore(max_requests) if max_requests > 0 else None

    def metrics_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if "name[]" in parse_qs(environ.get("QUERY_STRING", "")):
            return filtered_app(environ, start_response)
        gzipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", ""))
        try:
            body, content_type = shared.render(environ.get("HTTP_ACCEPT", ""), gzipped)
        except Exception as exc:  # sub-collectors catch their own errors: this is a bug
            log.exception("collecting metrics failed: %r", exc)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"Collecting metrics failed; see the exporter's log.\n"]
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [body]

    def scrape_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if slots is None:
            return metrics_app(environ, start_response)
        if not slots.acquire(timeout=slot_wait):
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"Limit of {max_requests} concurrent scrapes reached, try again later.\n".encode()]
        try:
            return metrics_app(environ, start_response)
        finally:
            slots.release()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if cfg.basic_auth_users and not _authorized(cfg, environ):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Basic realm="opencompute"')],
            )
            return [b"Unauthorized\n"]
        path = environ.get("PATH_INFO", "/")
        if path == telemetry_path:
            return scrape_app(environ, start_response)
        if path == "/health":
            return _health(scrape, health, start_response)
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


def _health(
    scrape: ScrapeCollector | None, health: HealthSource | None, start_response: StartResponse
) -> list[bytes]:
    status = scrape.status if scrape is not None else None
    body: dict[str, Any] = {"status": "ok"}
    code = "200 OK"
    if status is not None and status.finished_at is not None:
        body["last_scrape_timestamp_seconds"] = status.finished_at
        body["failed_collectors"] = status.failed
        if not status.ok:
            body["status"] = "degraded"
    extra = health() if health is not None else {}
    if extra.pop("degraded", False):
        body["status"] = "degraded"
    body.update(extra)
    if body["status"] != "ok":
        code = "503 Service Unavailable"
    start_response(code, [("Content-Type", "application/json")])
    return [json.dumps(body).encode() + b"\n"]


def _landing_page(exporter: str, telemetry_path: str, info: Landing) -> bytes:
    """The page at ``/``: version, what is enabled, where state goes, and links (all escaped)."""
    esc = html.escape
    name = esc(f"opencompute {exporter} exporter")
    path = esc(telemetry_path)
    rows = [("version", __version__)]
    if info.collectors:
        rows.append(("collectors", ", ".join(info.collectors)))
    if info.loops:
        rows.append(("background loops", ", ".join(info.loops)))
    rows.extend(info.settings.items())
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in rows)
    links = [(path, "Metrics"), ("/health", "Health")]
    if info.docs:
        links.append((esc(info.docs), "Metrics reference"))
    items = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links)
    return (
        f"<!DOCTYPE html><html><head><title>{name}</title></head><body>"
        f"<h1>{name}</h1><p>NI Compute Subnet (SN27) metrics for Prometheus.</p>"
        f"<table>{table}</table><ul>{items}</ul></body></html>\n"
    ).encode()


class _LazyTLSAdapter(Adapter):
    """cheroot TLS adapter whose handshake runs in a worker thread, not in the accept loop.

    cheroot's builtin adapter handshakes inside ``accept``: one client that connects and sends
    nothing holds every other client (and shutdown) until its socket times out. Here ``wrap``
    only attaches the context and :class:`_Connection` completes the handshake on the first
    read, so a silent client waits in cheroot's selector without a thread and is dropped at the
    idle timeout. The context is the web config's (min/max version, client_auth_type, CA).
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(None, None)
        self.context = context

    def bind(self, sock: Any) -> Any:
        return sock

    def wrap(self, sock: Any) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, self.get_environ()

    def get_environ(self) -> dict[str, str]:
        return {"wsgi.url_scheme": "https", "HTTPS": "on"}

    def makefile(self, sock: Any, mode: str = "r", bufsize: int = -1) -> Any:
        cls = StreamReader if "r" in mode else StreamWriter
        return cls(sock, mode, bufsize)


class _Connection(HTTPConnection):
    """Reads a request under :data:`READ_TIMEOUT`, completing a deferred TLS handshake first.

    The socket timeout cheroot sets at accept is the idle timeout (how long its selector keeps a
    quiet keep-alive connection); once bytes arrive, each read may stall at most READ_TIMEOUT.
    """

    _tls_ready = False

    def communicate(self) -> bool:
        sock = self.socket
        sock.settimeout(READ_TIMEOUT)
        if isinstance(sock, ssl.SSLSocket) and not self._tls_ready:
            try:
                sock.do_handshake()
            except (OSError, ValueError) as exc:  # ssl.SSLError, timeouts and resets are OSErrors
                log.debug("TLS handshake with %s failed: %s", self.remote_addr, exc)
                return False
            self._tls_ready = True
        return bool(super().communicate())


class _Server(wsgi.Server):
    ConnectionClass = _Connection

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        # Clients that hang up, time out or speak plain HTTP to the TLS port are not our errors.
        log.debug("http: %s", msg, exc_info=traceback)


class HTTPServer:
    """cheroot on (host, port): keep-alive, a worker pool, timeouts, TLS when the config asks."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        web_config: WebConfig | None = None,
        *,
        threads: int = 64,
    ) -> None:
        cfg = web_config or WebConfig()
        server = _Server((host, port), app, numthreads=threads, server_name="opencompute")
        server.timeout = IDLE_TIMEOUT
        server.request_queue_size = BACKLOG
        server.shutdown_timeout = SHUTDOWN_TIMEOUT
        server.keep_alive_conn_limit = None  # an idle connection costs a selector slot, not a thread
        self.tls = cfg.tls is not None
        if cfg.tls is not None:
            server.ssl_adapter = _LazyTLSAdapter(cfg.tls.ssl_context())
        server.prepare()  # binds now: a busy port is an OSError here, not in the thread
        self._server = server
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.bind_addr[1])

    def start(self) -> None:
        """Serve in a daemon thread (its worker threads, started by prepare(), are daemons too)."""
        self._thread = threading.Thread(target=self._server.serve, name="http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self._server.serve()

    def shutdown(self) -> None:
        """Stop accepting, give running requests SHUTDOWN_TIMEOUT, then close what is left."""
        self._server.stop()
        if self._thread is not None:
            self._thread.join(SHUTDOWN_TIMEOUT + 1.0)
