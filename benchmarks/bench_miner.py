"""Miner exporter benchmark: a full scrape with 8 GPUs (FAKE NVML, real psutil), against budgets.

Prints, each with PASS/FAIL against its budget:

* server-side render: ``generate_latest`` on the exporter's registry, median (<= 5 ms); every
  render reads NVML afresh (snapshot sharing disabled) so the fake's call path is fully exercised;
* HTTP round trip on loopback, median (<= 10 ms);
* ``opencompute-exporter --help`` and ``opencompute-exporter miner --help`` wall time, best of 5
  (<= 0.3 s);
* the workload collector's added cost per scrape at 8 GPUs x 20 processes (rental, check, a
  stranger's container, host; fake Docker Engine API on a unix socket, a procfs tree of cgroup
  files), median (<= 2 ms): its collect plus exposition, with the NVML snapshot shared as in a
  real scrape and fresh per-process utilisation samples before every scrape; container lookups
  are cached and refreshed off the scrape path, as in the exporter;
* RSS of a real ``opencompute-exporter miner`` process after 50 scrapes (<= 60 MB). That process
  runs the real CLI; the fake NVML is put in ``sys.modules["pynvml"]`` by a two-line bootstrap, so
  the exporter itself has no test hook.

The fake answers instantly, so real-GPU cost (NVML calls take 0.1-1 ms each; see
``benchmarks/gpu_check.py``) comes on top of the render figure. Run:
``.venv/bin/python benchmarks/bench_miner.py [--scrapes 300]``.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from prometheus_client import generate_latest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fakes.docker_engine import FakeContainer, FakeDockerEngine  # noqa: E402
from fakes.nvml import FakeNvml, FakeProcess, FakeUtilSample, eight_gpus  # noqa: E402

from exporters.miner.cli import build_exporter, flags  # noqa: E402

BUDGETS = {"render_ms": 5.0, "http_ms": 10.0, "help_s": 0.3, "rss_mb": 60.0, "workload_ms": 2.0}
CLI = REPO / ".venv" / "bin" / "opencompute-exporter"

_BOOTSTRAP = (
    "import sys; sys.path.insert(0, {tests!r}); from fakes.nvml import FakeNvml, eight_gpus; "
    "sys.modules['pynvml'] = FakeNvml(eight_gpus()); from exporters.cli import main; "
    "sys.exit(main(['miner', '--web.listen-address', '127.0.0.1:0']))"
)


def verdict(value: float, budget: float) -> str:
    return "PASS" if value <= budget else "FAIL"


def default_values() -> dict:
    fs = flags()
    parser = argparse.ArgumentParser()
    fs.install(parser)
    return fs.resolve(parser.parse_args([]), {})


def bench_in_process(scrapes: int) -> tuple[float, float, int, int]:
    fake = FakeNvml(eight_gpus())
    parts = build_exporter(default_values(), nvml=fake, psutil=psutil, snapshot_max_age=0)
    parts.watcher.poll_once()
    for gpu, xid in ((0, 13), (3, 79), (3, 79)):
        fake.emit_xid(gpu, xid)
        parts.watcher.poll_once()
    registry = parts.exporter.registry
    body = generate_latest(registry)
    for _ in range(20):
        generate_latest(registry)
    renders = []
    for _ in range(scrapes):
        t = time.perf_counter()
        generate_latest(registry)
        renders.append(time.perf_counter() - t)
    server = parts.exporter.server("127.0.0.1", 0)
    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    session = requests.Session()
    rtts = []
    try:
        for _ in range(20):
            session.get(url, timeout=5)
        for _ in range(scrapes):
            t = time.perf_counter()
            r = session.get(url, timeout=5)
            rtts.append(time.perf_counter() - t)
            r.raise_for_status()
    finally:
        server.shutdown()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return statistics.median(renders) * 1e3, statistics.median(rtts) * 1e3, series, len(body)


def bench_workload(scrapes: int) -> tuple[float, float, float, int, float]:
    """(median wall ms and thread-CPU ms per scrape, first scrape wall ms with a cold pid cache,
    samples, median ms to render the same samples as constants) of the workload collector. The CPU
    time leaves out waits for a core on a busy host."""
    import tempfile

    from prometheus_client import CollectorRegistry

    from exporters.miner.docker_api import DockerEngine
    from exporters.miner.nvml import GpuReader, NvmlSession
    from exporters.miner.workload import WorkloadCollector, WorkloadResolver

    kinds = ["ssh-container"] * 12 + ["ssh-test-container"] * 4 + ["stranger"] * 2 + [None] * 2
    ids = {
        name: f"{n:02x}" * 32 for n, name in enumerate(("ssh-container", "ssh-test-container", "stranger"))
    }
    gpus = eight_gpus()
    with tempfile.TemporaryDirectory(prefix="oc-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        for g, gpu in enumerate(gpus):
            gpu.processes = [FakeProcess(10_000 + g * 100 + i, (i + 1) * 2**28) for i in range(len(kinds))]
            for i, kind in enumerate(kinds):
                pid_dir = root / "proc" / str(10_000 + g * 100 + i)
                pid_dir.mkdir(parents=True)
                path = f"/system.slice/docker-{ids[kind]}.scope" if kind else "/user.slice/session-1.scope"
                (pid_dir / "cgroup").write_text(f"0::{path}\n")
        docker = FakeDockerEngine(
            root / "d.sock", containers=[FakeContainer(cid, n) for n, cid in ids.items()]
        )
        try:
            fake = FakeNvml(gpus)
            resolver = WorkloadResolver(DockerEngine(str(docker.socket_path)), procfs=root / "proc")
            resolver.refresh()
            collector = WorkloadCollector(GpuReader(NvmlSession(fake), max_age=3600.0), resolver)
            collector._reader.snapshot()  # shared with the nvml collector in a real scrape
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_Wrap(collector))

            def fresh_samples(tick: int) -> None:
                for gpu in gpus:
                    gpu.util_samples = [FakeUtilSample(p.pid, tick, 20) for p in gpu.processes]

            fresh_samples(1)
            t = time.perf_counter()
            body = generate_latest(registry)
            cold = time.perf_counter() - t
            times, cpu = [], []
            for tick in range(2, scrapes + 2):
                fresh_samples(tick)
                t, c = time.perf_counter(), time.thread_time()
                generate_latest(registry)
                times.append(time.perf_counter() - t)
                cpu.append(time.thread_time() - c)
            assert b'workload="rental"} 12.0' in body, "the benchmark setup is not attributed"
            reference = _exposition_only(body, scrapes)
        finally:
            docker.close()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return statistics.median(times) * 1e3, statistics.median(cpu) * 1e3, cold * 1e3, series, reference


def _exposition_only(body: bytes, scrapes: int) -> float:
    """Median ms to render the same samples as constants: how much of the cost is exposition alone
    (prometheus_client), and a gauge of how busy the machine is right now."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(body.decode()))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Wrap(type("Const", (), {"collect": lambda self: iter(families)})()))
    times = []
    for _ in range(scrapes):
        t = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


class _Wrap:
    def __init__(self, collector: object) -> None:
        self._collector = collector

    def collect(self):
        return self._collector.collect()

    def describe(self) -> list:
        return []


def best_of(cmd: list[str], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def bench_process_rss(scrapes: int = 50) -> tuple[float, float]:
    code = _BOOTSTRAP.format(tests=str(REPO / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        port, deadline = None, time.monotonic() + 20
        while port is None and time.monotonic() < deadline:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)/", proc.stderr.readline())
            port = int(m.group(1)) if m else None
        if port is None:
            raise RuntimeError("the miner process did not start")
        session = requests.Session()
        rtts = []
        for _ in range(scrapes):
            t = time.perf_counter()
            session.get(f"http://127.0.0.1:{port}/metrics", timeout=5).raise_for_status()
            rtts.append(time.perf_counter() - t)
            time.sleep(0.02)  # let the 1 s snapshot sharing expire now and then, like real scrapes
        rss = psutil.Process(proc.pid).memory_info().rss / 1e6
        return rss, statistics.median(rtts) * 1e3
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=300)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the injected XIDs would log a warning each
    render_ms, http_ms, series, size = bench_in_process(args.scrapes)
    help_top = best_of([str(CLI), "--help"])
    help_miner = best_of([str(CLI), "miner", "--help"])
    rss_mb, proc_http_ms = bench_process_rss()
    workload_ms, workload_cpu_ms, workload_cold_ms, workload_series, expo_ms = bench_workload(args.scrapes)
    rows = [
        (
            "render (generate_latest), median",
            f"{render_ms:.2f} ms",
            verdict(render_ms, BUDGETS["render_ms"]),
            "5 ms",
        ),
        (
            "HTTP /metrics round trip, median",
            f"{http_ms:.2f} ms",
            verdict(http_ms, BUDGETS["http_ms"]),
            "10 ms",
        ),
        (
            "opencompute-exporter --help, best of 5",
            f"{help_top:.3f} s",
            verdict(help_top, BUDGETS["help_s"]),
            "0.3 s",
        ),
        (
            "... miner --help, best of 5",
            f"{help_miner:.3f} s",
            verdict(help_miner, BUDGETS["help_s"]),
            "0.3 s",
        ),
        (
            "workload collector, 8 GPUs x 20 procs, median",
            f"{workload_ms:.2f} ms",
            verdict(workload_ms, BUDGETS["workload_ms"]),
            "2 ms",
        ),
        (
            "miner process RSS after 50 scrapes",
            f"{rss_mb:.1f} MB",
            verdict(rss_mb, BUDGETS["rss_mb"]),
            "60 MB",
        ),
    ]
    print(
        f"miner exporter, 8 fake GPUs: {series} samples, {size / 1024:.1f} KiB per scrape, "
        f"{args.scrapes} scrapes"
    )
    for name, val, ok, budget in rows:
        print(f"  {name:<42} {val:>10}  budget {budget:<6} {ok}")
    print(f"  (info) HTTP round trip to the real process, median: {proc_http_ms:.2f} ms")
    print(
        f"  (info) workload collector: {workload_series} samples; thread CPU per scrape, median: "
        f"{workload_cpu_ms:.2f} ms; first scrape (cold pid cache, 160 /proc reads): "
        f"{workload_cold_ms:.2f} ms; exposition of the same samples alone: {expo_ms:.2f} ms"
    )
    return 0 if all(r[2] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
