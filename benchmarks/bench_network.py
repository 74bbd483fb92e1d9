"""Network exporter: refresh cost, scrape cost, and WandB requests per hour.

Usage: ``.venv/bin/python benchmarks/bench_network.py [--scales 1,4,16] [--repeat 7] [--no-wandb]``

1. Refresh: a simulated subnet (1x = 64 validator runs with 256 stats entries each + 1,000 miner
   runs, all signed; tampered, v1-only, low-stake and over-claiming runs mixed in) is held as
   JSON in memory. One full refresh = decode every run's JSON (what the WandB client does with a
   GraphQL page) + verify every signature + aggregate every view + build the snapshot. No
   network wait. Target at 1x: <= 200 ms median; it should grow linearly (4x, 16x).
2. Scrape: ``generate_latest`` of the resulting registry (what one /metrics costs). Target
   <= 20 ms median.
3. The WandB path: requests and CPU per refresh (this Python process and its wandb-core child,
   which makes the GraphQL calls for ``wandb.Api``), through the real client against the fake
   GraphQL server in ``tests/fakes/wandb_graphql.py`` run in its own process (so its CPU is not
   counted), at 1x and 4x; requests per hour at the default cadences next to the original's.
   Target: validator refresh <= 100 ms CPU in all at 1x, growing linearly.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import orjson
from prometheus_client import generate_latest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporters.core.state.base import RunRecord  # noqa: E402
from exporters.network import cli  # noqa: E402
from exporters.network.refresh import ROLES  # noqa: E402
from exporters.network.simulate import MemoryStateStore, seed_network  # noqa: E402

BASE_VALIDATORS = 64
BASE_MINERS = 1000


class JsonListStore:
    """Runs held as JSON bytes; every read decodes them, like a WandB page being parsed."""

    backend = "memory"

    def __init__(self, records: list[RunRecord], entity_project: str) -> None:
        self.entity_project = entity_project
        self._rows = [(r, orjson.dumps(r.config)) for r in records]
        self.reads = 0

    def read_runs(self, role, netuid, *, require_key=None, running_only=False, updated_since=None):
        self.reads += 1
        out = []
        for rec, blob in self._rows:
            if rec.name.startswith(f"{role}-"):
                out.append(
                    RunRecord(
                        rec.run_id, rec.name, orjson.loads(blob), rec.state, rec.created_at, rec.updated_at
                    )
                )
        return out

    def request_count(self) -> int:
        return self.reads


def build_network(scale: int) -> tuple[JsonListStore, object, int]:
    store = MemoryStateStore()
    validators, miners = BASE_VALIDATORS * scale, BASE_MINERS * scale
    net = seed_network(
        store,
        validators=validators,
        miners=miners,
        seed=scale,
        tampered=5 * scale,
        v1_only=5 * scale,
        penalized=8,
        max_uids=256 + validators,  # every validator keeps a uid; 256 miner uids at 1x
    )
    records = store.read_runs("validator", 27) + store.read_runs("miner", 27)
    stats_entries = sum(len(r.config.get("stats", {})) for r in records)
    return JsonListStore(records, store.entity_project), net, stats_entries


def one_refresh(store: JsonListStore, net, state_dir: str):
    values = {"network_state_dir": state_dir, "network_max_run_age": 86400.0}
    parts = cli.build_exporter(values, store=store, source=net.source())
    gc.collect()
    start = time.perf_counter()
    ok = parts.refresher.refresh("validator") and parts.refresher.refresh("miner")
    elapsed = time.perf_counter() - start
    assert ok, "refresh failed"
    return elapsed, parts


def bench_refresh(scales: list[int], repeat: int) -> object:
    print("== refresh (decode + verify + aggregate, in-memory JSON, no network wait)")
    header = ("scale", "validator runs", "stats entries", "miner runs", "median ms", "ms/1x")
    print("{:>5} {:>14} {:>13} {:>10} {:>10} {:>7}".format(*header))
    base = None
    parts_1x = None
    for scale in scales:
        store, net, entries = build_network(scale)
        with tempfile.TemporaryDirectory() as tmp:
            times = []
            for _ in range(repeat):
                elapsed, parts = one_refresh(store, net, tmp)
                times.append(elapsed)
        median = statistics.median(times) * 1000
        base = base or median / scale
        validators = sum(1 for r, _ in store._rows if r.name.startswith("validator-"))
        miners = len(store._rows) - validators
        print(
            f"{scale:>5}x {validators:>13} {entries:>13} {miners:>10} {median:>10.1f} {median / scale:>7.1f}"
        )
        if scale == 1:
            parts_1x = parts
            snap = parts.refresher.snapshot
            print(
                f"       1x snapshot: runs={dict(snap.runs)} rejected={dict(snap.rejected)} "
                f"uids={len(snap.stats)} specs={len(snap.specs)}"
            )
    print("   target: <= 200 ms median at 1x, linear growth (ms/1x roughly constant)")
    return parts_1x


def bench_scrape(parts, repeat: int) -> None:
    registry = parts.exporter.registry
    body = generate_latest(registry)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    times = []
    for _ in range(max(repeat, 50)):
        start = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - start)
    print("== scrape (generate_latest of the 1x snapshot)")
    print(
        f"   samples={samples} body={len(body) / 1024:.0f} KiB "
        f"median={statistics.median(times) * 1000:.2f} ms "
        f"p95={sorted(times)[int(len(times) * 0.95)] * 1000:.2f} ms   target: <= 20 ms median"
    )


def _serve_fake(records: list[RunRecord], conn) -> None:
    """Child process: the fake WandB GraphQL server holding ``records``; reports its URL, then
    answers ``counts`` with its request counts until told ``stop``."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes.wandb_graphql import FakeWandbGraphQL  # type: ignore[import-not-found]

    server = FakeWandbGraphQL()
    for rec in records:
        server.add_run(rec.run_id, rec.name, rec.config, state=rec.state, created_at=rec.created_at)
    conn.send(server.start())
    while (message := conn.recv()) != "stop":
        conn.send(dict(server.requests) if message == "counts" else None)
    server.stop()


def _cpu_split(server_pid: int) -> tuple[float, float]:
    """(CPU seconds of this process, CPU seconds of its children but the fake server: wandb-core
    when the client uses it), user + system."""
    import psutil

    me = psutil.Process()
    own = me.cpu_times()
    kids = 0.0
    for child in me.children(recursive=True):
        if child.pid == server_pid or child.name().startswith("python"):
            continue  # the fake server (and multiprocessing's helper) are not the exporter
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        kids += times.user + times.system
    return own.user + own.system, kids


def _timed(refresh, server_pid: int) -> tuple[float, float, float]:
    """(wall s, Python CPU s, wandb-core CPU s) of one refresh."""
    py0, core0 = _cpu_split(server_pid)
    start = time.perf_counter()
    assert refresh(), "refresh failed"
    wall = time.perf_counter() - start
    time.sleep(0.2)  # let a wandb-core child finish accounting for the last response
    py1, core1 = _cpu_split(server_pid)
    return wall, py1 - py0, core1 - core0


def bench_wandb(scales: list[int], repeat: int) -> None:
    """Requests and CPU per refresh through the real wandb.Api, the fake server in its own process."""
    import multiprocessing

    print("== WandB path: the store's GraphQL reads, fake GraphQL server in another process")
    print("   per refresh: requests, wall ms, CPU ms in this process, CPU ms in child processes (wandb-core,")
    print("   if the read path used it; the fake server excluded), medians")
    from exporters.core.state.wandb_store import WandbStateStore

    for scale in scales:
        mem = MemoryStateStore()
        validators, miners = BASE_VALIDATORS * scale, BASE_MINERS * scale
        net = seed_network(mem, validators=validators, miners=miners, seed=1, max_uids=256 + validators)
        records = mem.read_runs("validator", 27) + mem.read_runs("miner", 27)
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve_fake, args=(records, child), daemon=True)
        proc.start()
        try:
            base_url = parent.recv()
            with tempfile.TemporaryDirectory() as tmp:
                store = WandbStateStore(
                    base_url=base_url, api_key="x" * 40, db_path=f"{tmp}/state.db", run_dir=f"{tmp}/wandb"
                )
                parts = cli.build_exporter({"network_state_dir": tmp}, store=store, source=net.source())
                r = parts.refresher
                # cold: a new store and refresher, so every config is parsed and verified, as when
                # every run changed since the last refresh
                cold = {role: _timed(lambda role=role, r=r: r.refresh(role), proc.pid) for role in ROLES}
                figures: dict[str, list[tuple[float, float, float, int]]] = {"validator": [], "miner": []}
                for _ in range(repeat):
                    for role in ("validator", "miner"):
                        before = store.request_count()
                        wall, py, core = _timed(lambda role=role, r=r: r.refresh(role), proc.pid)
                        figures[role].append((wall, py, core, store.request_count() - before))
                parent.send("counts")
                by_operation = parent.recv()
                store.close()
        finally:
            parent.send("stop")
            proc.join(10)
        print(f"   {scale}x: {validators + 1} validator runs x {256 + validators} uids, {miners} miner runs")
        for role, (wall, py, core) in cold.items():
            print(
                f"      {role:9} refresh, cold (every config new): {wall * 1000:6.0f} ms wall, "
                f"{py * 1000:6.0f} ms CPU Python, {core * 1000:5.0f} ms CPU children"
            )
        for role, rows in figures.items():
            med = [statistics.median(col) for col in zip(*rows, strict=True)]
            spread = [min(py for _, py, _, _ in rows) * 1000, max(py for _, py, _, _ in rows) * 1000]
            print(
                f"      {role:9} refresh, unchanged configs: {med[3]:.0f} requests, "
                f"{med[0] * 1000:6.0f} ms wall, {med[1] * 1000:6.0f} ms CPU Python "
                f"(min {spread[0]:.0f}, max {spread[1]:.0f}), "
                f"{med[2] * 1000:5.0f} ms CPU children, total {(med[1] + med[2]) * 1000:.0f} ms CPU"
            )
        if scale == scales[0]:
            print(f"      requests by GraphQL operation (all refreshes): {by_operation}")
            per_v = statistics.median(row[3] for row in figures["validator"])
            per_m = statistics.median(row[3] for row in figures["miner"])
            hourly = per_v * 3600 / 300 + per_m * 3600 / 1800
            pages_v, pages_m = -(-(validators + 1) // 50), -(-miners // 50)
            original = 3 * pages_v * 3 + pages_m * 2
            print(
                f"      => {hourly:.0f} requests/hour (12 validator + 2 miner refreshes per hour); ONE "
                f"original validator: 3 scans x {pages_v} pages per sync_scores (~3/hour) + {pages_m} pages "
                f"of running miners every 30 min = ~{original}/hour"
            )
    print("   target: validator refresh <= 100 ms CPU (Python + wandb-core) at 1x, linear growth")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", default="1,4,16", help="comma-separated network sizes (multiples of 1x)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--no-wandb", action="store_true", help="skip the WandB request measurement")
    args = parser.parse_args()
    scales = [int(s) for s in args.scales.split(",") if s.strip()]
    if 1 not in scales:
        scales.insert(0, 1)
    parts = bench_refresh(scales, args.repeat)
    bench_scrape(parts, args.repeat)
    if not args.no_wandb:
        bench_wandb([s for s in scales if s <= 4], args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
