"""The embedded server as a hostile client and a careless operator meet it: real sockets, real TLS."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest
import requests
from prometheus_client.core import GaugeMetricFamily

from exporters.core import http as core_http
from exporters.core.collector import SubCollector
from exporters.core.runtime import Exporter, Loop
from exporters.core.webconfig import load_web_config

REPO = Path(__file__).resolve().parents[2]


class Ok(SubCollector):
    name = "ok"

    def __init__(self) -> None:
        self.calls = 0

    def collect(self):
        self.calls += 1
        yield GaugeMetricFamily("opencompute_test_value", "A test value.", value=1.0)


class Gate(SubCollector):
    """Blocks every collection until released; counts collections."""

    name = "gate"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def collect(self):
        self.calls += 1
        self.entered.set()
        assert self.release.wait(10)
        yield GaugeMetricFamily("opencompute_test_gate", "A test value.", value=1.0)


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(collectors, web_config=None, **kw):
        srv = Exporter("test", collectors, loops=kw.pop("loops", ())).server(
            "127.0.0.1", 0, "/metrics", web_config, **kw
        )
        srv.start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()


def _tls(tmp_path: Path, tls_material: dict[str, Path], extra: str = ""):
    p = tmp_path / "web.yml"
    p.write_text(
        f"tls_server_config:\n  cert_file: {tls_material['server.crt']}\n"
        f"  key_file: {tls_material['server.key']}\n{extra}"
    )
    return load_web_config(p)


def test_a_silent_tls_client_and_a_partial_record_header_do_not_block_other_scrapes(
    serve, tmp_path, tls_material
):
    srv = serve([Ok()], web_config=_tls(tmp_path, tls_material))
    silent = socket.create_connection(("127.0.0.1", srv.port))
    partial = socket.create_connection(("127.0.0.1", srv.port))
    partial.sendall(b"\x16\x03\x01")
    try:
        start = time.monotonic()
        for _ in range(3):
            r = requests.get(
                f"https://127.0.0.1:{srv.port}/metrics", verify=str(tls_material["ca.crt"]), timeout=5
            )
            assert r.status_code == 200
        assert time.monotonic() - start < 2.0
    finally:
        silent.close()
        partial.close()


def test_a_stalled_tls_handshake_is_dropped_after_the_read_timeout(
    serve, tmp_path, tls_material, monkeypatch
):
    monkeypatch.setattr(core_http, "READ_TIMEOUT", 0.5)
    srv = serve([Ok()], web_config=_tls(tmp_path, tls_material))
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    s.sendall(b"\x16\x03\x01")
    start = time.monotonic()
    assert s.recv(100) == b""  # closed by the server, no answer
    assert time.monotonic() - start < 3.0
    s.close()


def test_idle_keep_alive_and_slow_clients_time_out(serve, monkeypatch):
    monkeypatch.setattr(core_http, "IDLE_TIMEOUT", 1.0)
    monkeypatch.setattr(core_http, "READ_TIMEOUT", 0.5)
    srv = serve([Ok()])
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    slow = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    start = time.monotonic()
    for sock in (idle, slow):
        answer = _read_until_closed(sock)  # a 408 Request Timeout at most, then closed
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - start < 4.0
    idle.close()
    slow.close()


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(1000):
        data += chunk
    return data


def test_http_1_1_keep_alive_serves_many_scrapes_on_one_connection(serve):
    srv = serve([Ok()])
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    for _ in range(3):
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.version == 11
        assert b"opencompute_test_value" in resp.read()
    local = conn.sock.getsockname()
    conn.request("GET", "/health")
    conn.getresponse().read()
    assert conn.sock.getsockname() == local  # still the same TCP connection
    conn.close()


def test_the_listen_backlog_is_at_least_128(serve):
    srv = serve([Ok()])
    assert srv._server.request_queue_size >= 128


def _get_async(url: str, out: list, **kw) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(requests.get(url, timeout=15, **kw)), daemon=True)
    t.start()
    return t


def test_scrapes_beyond_max_requests_get_503_and_the_others_are_served(serve):
    gate = Gate()
    srv = serve([gate], max_requests=1)
    url = f"http://127.0.0.1:{srv.port}/metrics"
    first: list = []
    t = _get_async(url, first)
    assert gate.entered.wait(5)
    start = time.monotonic()
    r = requests.get(url, timeout=5)
    assert r.status_code == 503
    assert 0.5 < time.monotonic() - start < 3.0  # it waited SLOT_WAIT for a slot first
    assert requests.get(f"http://127.0.0.1:{srv.port}/health", timeout=5).status_code == 200
    gate.release.set()
    t.join(10)
    assert first[0].status_code == 200
    assert requests.get(url, timeout=5).status_code == 200  # the slot was given back


def test_concurrent_scrapes_share_one_collection(serve):
    gate = Gate()
    srv = serve([gate])
    url = f"http://127.0.0.1:{srv.port}/metrics"
    out: list = []
    threads = [_get_async(url, out)]
    assert gate.entered.wait(5)
    threads += [_get_async(url, out) for _ in range(7)]
    threads += [_get_async(url, out, headers={"Accept-Encoding": "gzip"}) for _ in range(2)]
    time.sleep(0.5)  # the others are now waiting on the flight in progress
    gate.release.set()
    for t in threads:
        t.join(10)
    assert [r.status_code for r in out] == [200] * 10
    assert all("opencompute_test_gate 1.0" in r.text for r in out)
    assert gate.calls <= 2  # one flight (a late starter may begin a second)
    requests.get(url, timeout=5)
    assert gate.calls <= 3  # nothing is cached after the flight


def _median_auth_time(url: str, user: str, n: int = 7) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        assert requests.get(url, auth=(user, "wrong"), timeout=10).status_code == 401
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_unknown_users_take_as_long_as_known_users_with_a_wrong_password(serve, tmp_path):
    hashed = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=8)).decode()
    p = tmp_path / "web.yml"
    p.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    srv = serve([Ok()], web_config=load_web_config(p))
    url = f"http://127.0.0.1:{srv.port}/metrics"
    known = _median_auth_time(url, "prom")
    unknown = _median_auth_time(url, "nobody")
    # Without the dummy hash the unknown user is ~10-20x faster (no bcrypt at all).
    assert 0.5 < unknown / known < 2.0, (unknown, known)


def test_a_loop_whose_body_raises_is_restarted_counted_and_shown_on_health(serve):
    calls = []

    def body():
        calls.append(time.monotonic())
        if len(calls) <= 2:
            raise RuntimeError(f"boom {len(calls)}")

    loop = Loop("flaky", 0.05, body, min_backoff=0.05)
    srv = serve([Ok()], loops=[loop])
    base = f"http://127.0.0.1:{srv.port}"
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        health = requests.get(f"{base}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["loops"]["flaky"]["restarts"] == 2
        assert health.json()["loops"]["flaky"]["alive"] is True
        text = requests.get(f"{base}/metrics", timeout=5).text
        assert 'opencompute_exporter_loop_restarts_total{loop="flaky"} 2.0' in text
        assert 'opencompute_exporter_loop_up{loop="flaky"} 1.0' in text
    finally:
        loop.stop()


def test_a_failing_loop_makes_health_degraded_until_it_recovers(serve):
    fail = threading.Event()
    fail.set()

    def body():
        if fail.is_set():
            raise RuntimeError("upstream down")

    loop = Loop("stuck", 0.05, body, min_backoff=0.05)
    srv = serve([Ok()], loops=[loop])
    loop.start()
    try:
        time.sleep(0.3)
        r = requests.get(f"http://127.0.0.1:{srv.port}/health", timeout=5)
        assert r.status_code == 503 and r.json()["status"] == "degraded"
        assert r.json()["loops"]["stuck"]["last_error"] == "RuntimeError: upstream down"
        fail.clear()
        time.sleep(0.5)
        assert requests.get(f"http://127.0.0.1:{srv.port}/health", timeout=5).status_code == 200
    finally:
        loop.stop()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_loop_whose_thread_dies_is_restarted_by_the_watchdog():
    runs = []

    def body():
        runs.append(1)
        if len(runs) == 1:
            raise SystemExit("a body that ends its thread")

    loop = Loop("dies", 0.05, body)
    loop.start()
    try:
        loop._thread.join(5)
        assert not loop.alive and loop.failing
        assert loop.ensure_running()
        deadline = time.monotonic() + 5
        while len(runs) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert loop.alive and len(runs) >= 2 and loop.restarts == 1
    finally:
        loop.stop()


_MINER = (
    "import sys; sys.path.insert(0, {tests!r}); from fakes.nvml import FakeNvml, eight_gpus; "
    "sys.modules['pynvml'] = FakeNvml(eight_gpus()); from exporters.cli import main; "
    "sys.exit(main(['miner', '--web.listen-address', '127.0.0.1:{port}', '--no-collector.miner']))"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_exits_within_5_seconds_with_idle_slow_and_busy_clients_connected():
    port = _free_port()
    code = _MINER.format(tests=str(REPO / "tests"), port=port)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "miner did not start"
                time.sleep(0.2)
        clients = []
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", port))
            if i % 2:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # slow: never finishes
            clients.append(s)
        stop = threading.Event()

        def hammer():
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        session.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
                    except requests.RequestException:
                        return

        load = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        for t in load:
            t.start()
        time.sleep(0.5)
        start = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
        assert time.monotonic() - start < 5.0
        assert proc.returncode == 0, proc.stderr.read().decode()
        stop.set()
        for s in clients:
            s.close()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_a_loop_waits_the_delay_its_last_result_asks_for():
    """The registrar's loop runs again when a rate-limit window closes, not a whole interval later."""
    runs: list[float] = []
    asked: list[object] = []

    def body() -> str:
        runs.append(time.monotonic())
        return "waiting" if len(runs) < 3 else "done"

    def next_delay(result: object) -> float:
        asked.append(result)
        return 0.05 if result == "waiting" else 3600.0

    loop = Loop("waits", 3600.0, body, next_delay=next_delay)
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while len(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        loop.stop()
    assert len(runs) == 3  # two short waits, then the long one
    assert asked == ["waiting", "waiting", "done"]
    assert runs[2] - runs[0] < 2.0
