"""Serving benchmark: each exporter under 50 concurrent keep-alive scrapers, hostile clients included.

Each exporter runs in its own process on its embedded server, over TLS (web config with a
throwaway certificate), built as in production:

* miner: the FAKE NVML at 8 GPUs (tests/fakes/nvml.py), real psutil;
* validator: a ComputeDb of 256 uids and 20,000 pog_stats + 20,000 challenge_details rows;
* network: the seeded store of benchmarks/bench_network.py at 1x, refreshed once.

Per exporter: ``wrk`` (Debian package ``wrk``; a benchmark-only dependency) with 50 keep-alive
connections for ``--duration`` seconds, twice. During the second round 20 slow clients (TLS
connected, sending a request header one byte every 2 s), one silent TCP connection (no TLS
ClientHello) and one that sent only the first 3 bytes of a TLS record stay open, and a probe
makes a fresh-connection scrape every second. Both rounds follow a 15 s warm-up with the same
mix (so RSS is compared between steady states, not against a cold start). Printed, with
PASS/FAIL against the budgets set for an idle 2-core machine: errors and timeouts (0), p99
latency (miner/network <= 100 ms, validator <= 250 ms), RSS growth between rounds (<= 2 MB),
the slowest probe (< 1 s) and the exit after SIGTERM (<= 5 s).

Usage: ``.venv/bin/python benchmarks/bench_serving.py [--duration 60] [--only validator]``
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

P99_BUDGET_MS = {"miner": 100.0, "network": 100.0, "validator": 250.0}
RSS_GROWTH_MB = 2.0
PROBE_BUDGET_S = 1.0
CONNECTIONS = 50
SLOW_CLIENTS = 20


# --------------------------------------------------------------------------- the served exporter


def _values(flagset: object, argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    flagset.install(parser)  # type: ignore[attr-defined]
    return flagset.resolve(parser.parse_args(argv), environ={})  # type: ignore[attr-defined]


def _build(kind: str, tmp: Path) -> object:
    """The exporter ``kind`` with its production collectors and loops (minus publishing)."""
    if kind == "miner":
        import psutil
        from fakes.nvml import FakeNvml, eight_gpus

        from exporters.miner import cli

        return cli.build_exporter(
            _values(cli.flags(), []), nvml=FakeNvml(eight_gpus()), psutil=psutil
        ).exporter
    if kind == "validator":
        from exporters.validator import cli
        from exporters.validator.simulate import create_compute_db

        db = create_compute_db(tmp / "v.db", miners=256, pog_rows=20_000, challenge_rows=20_000, seed=1)
        return cli.build_exporter(_values(cli.flags(), [f"--validator.db-path={db.path}"])).exporter
    from bench_network import build_network

    from exporters.network import cli

    store, net, _ = build_network(1)
    values = {"network_state_dir": str(tmp), "network_max_run_age": 86400.0}
    parts = cli.build_exporter(values, store=store, source=net.source())
    parts.refresher.refresh("validator")
    parts.refresher.refresh("miner")
    return parts.exporter


def serve(kind: str, web_config: str, port_file: str) -> int:
    """Child process: serve ``kind`` on 127.0.0.1 until SIGTERM, as ``Exporter.serve`` does."""
    import logging

    from exporters.core.runtime import limit_malloc_arenas
    from exporters.core.webconfig import load_web_config

    logging.basicConfig(level=logging.WARNING)
    limit_malloc_arenas()  # as Exporter.serve does
    with tempfile.TemporaryDirectory() as tmp:
        exporter = _build(kind, Path(tmp))
        server = exporter.server("127.0.0.1", 0, "/metrics", load_web_config(web_config))  # type: ignore[attr-defined]
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        for loop in exporter.loops:  # type: ignore[attr-defined]
            loop.start()
        server.start()
        Path(port_file).write_text(str(server.port))
        stop.wait()
        server.shutdown()
    return 0


# --------------------------------------------------------------------------- hostile clients


class Hostiles:
    """20 slow TLS clients, one silent TCP connection and one 3-byte TLS record header."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port, self.ctx = port, ctx
        self.stop = threading.Event()
        self.socks: list[socket.socket] = []
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Hostiles:
        silent = socket.create_connection(("127.0.0.1", self.port))
        header = socket.create_connection(("127.0.0.1", self.port))
        header.sendall(b"\x16\x03\x01")
        self.socks += [silent, header]
        for _ in range(SLOW_CLIENTS):
            t = threading.Thread(target=self._slow, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def _slow(self) -> None:
        request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"x" * 10_000
        try:
            with self.ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", self.port), timeout=30), server_hostname="127.0.0.1"
            ) as s:
                for byte in request:
                    if self.stop.wait(2.0):
                        return
                    s.sendall(bytes([byte]))
        except OSError:
            return  # the server may drop a slow client; that is allowed

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for s in self.socks:
            s.close()
        for t in self.threads:
            t.join(5)


def probe(port: int, ctx: ssl.SSLContext, stop: threading.Event, out: list[float]) -> None:
    """A fresh-connection scrape every second; its latency (inf on failure) goes into ``out``."""
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    while not stop.wait(1.0):
        start = time.perf_counter()
        try:
            with ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="127.0.0.1"
            ) as s:
                s.sendall(request)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            ok = data.startswith(b"HTTP/1.1 200")
        except OSError:
            ok = False
        out.append(time.perf_counter() - start if ok else float("inf"))


# --------------------------------------------------------------------------- wrk


def wrk(port: int, duration: int) -> dict[str, float]:
    """One wrk round; requests/s, p50/p99 (ms), socket errors, timeouts and non-2xx answers."""
    cmd = [
        "wrk",
        f"-c{CONNECTIONS}",
        "-t2",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        f"https://127.0.0.1:{port}/metrics",
    ]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"50%\s+([\d.]+\w+)", text).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"99%\s+([\d.]+\w+)", text).group(1)),  # type: ignore[union-attr]
        "errors": float(sum(int(x) for x in errors.groups()[:3])) if errors else 0.0,
        "timeouts": float(errors.group(4)) if errors else 0.0,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
    }


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- driver


def tls_files(d: Path) -> tuple[Path, ssl.SSLContext]:
    """A self-signed certificate for 127.0.0.1, its web config, and a client context trusting it."""
    subprocess.run(
        [
            *"openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem -days 1".split(),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        cwd=d,
        check=True,
        capture_output=True,
    )
    web = d / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {d / 'c.pem'}\n  key_file: {d / 'k.pem'}\n")
    return web, ssl.create_default_context(cafile=str(d / "c.pem"))


def bench(kind: str, duration: int, web: Path, ctx: ssl.SSLContext) -> bool:
    port_file = web.parent / f"{kind}.port"
    port_file.unlink(missing_ok=True)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", kind, "--web-config", str(web), "--port-file", str(port_file)]
    )
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} exporter did not start")
            time.sleep(0.2)
        port = int(port_file.read_text())
        # Warm-up with the same mix, so the rounds compare steady states: every worker thread's
        # stack and buffers touched, the allocator at its working size. Growth after that is a leak.
        with Hostiles(port, ctx):
            wrk(port, 10)
        wrk(port, 5)
        first = wrk(port, duration)
        rss1 = rss_mb(child.pid)
        probes: list[float] = []
        stop = threading.Event()
        with Hostiles(port, ctx):
            t = threading.Thread(target=probe, args=(port, ctx, stop, probes), daemon=True)
            t.start()
            second = wrk(port, duration)
            stop.set()
            t.join(15)
        rss2 = rss_mb(child.pid)
        start = time.monotonic()
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        exit_s = time.monotonic() - start
    finally:
        if child.poll() is None:
            child.kill()
    return report(kind, first, second, rss1, rss2, probes, exit_s)


def report(
    kind: str, first: dict, second: dict, rss1: float, rss2: float, probes: list[float], exit_s: float
) -> bool:
    ok = True
    print(f"== {kind}")
    for name, r in (("round 1", first), ("round 2 (+20 slow, silent TLS)", second)):
        print(
            f"   {name}: {r['rps']:.1f} req/s ({r['requests']:.0f} requests), p50 {r['p50_ms']:.1f} ms, "
            f"p99 {r['p99_ms']:.1f} ms, socket errors {r['errors']:.0f}, timeouts {r['timeouts']:.0f}, "
            f"non-2xx {r['non2xx']:.0f}"
        )
    checks = [
        (
            "errors+timeouts+non-2xx == 0",
            sum(r[k] for r in (first, second) for k in ("errors", "timeouts", "non2xx")) == 0,
        ),
        (
            f"p99 <= {P99_BUDGET_MS[kind]:.0f} ms",
            max(first["p99_ms"], second["p99_ms"]) <= P99_BUDGET_MS[kind],
        ),
        (f"RSS {rss1:.1f} -> {rss2:.1f} MiB, growth <= {RSS_GROWTH_MB} MB", rss2 - rss1 <= RSS_GROWTH_MB),
        (
            f"probe scrapes with hostile clients open: {len(probes)}, slowest "
            f"{max(probes, default=float('inf')):.3f} s < {PROBE_BUDGET_S:.0f} s",
            bool(probes) and max(probes) < PROBE_BUDGET_S,
        ),
        (f"SIGTERM exit in {exit_s:.2f} s <= 5 s", exit_s <= 5.0),
    ]
    for text, passed in checks:
        ok = ok and passed
        print(f"   {'PASS' if passed else 'FAIL'}  {text}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=60, help="seconds per wrk round (default 60)")
    parser.add_argument("--only", choices=sorted(P99_BUDGET_MS), action="append")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--web-config", help=argparse.SUPPRESS)
    parser.add_argument("--port-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.web_config, args.port_file)
    if shutil.which("wrk") is None:
        print("bench_serving needs wrk (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        web, ctx = tls_files(Path(tmp))
        results = [
            bench(kind, args.duration, web, ctx) for kind in args.only or ("miner", "validator", "network")
        ]
    with contextlib.suppress(OSError):
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
