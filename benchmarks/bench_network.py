"""Network exporter: refresh cost, scrape cost, and WandB requests per hour.

Usage: ``.venv/bin/python benchmarks/bench_network.py [--scales 1,4,16] [--repeat 7] [--no-wandb]``

1. Refresh: a simulated subnet (1x = 64 validator runs with 256 stats entries each + 1,000 miner
   runs, all signed; tampered, v1-only, low-stake and over-claiming runs mixed in) is held as
   JSON in memory. One full refresh = decode every run's JSON (what the WandB client does with a
   GraphQL page) + verify every signature + aggregate every view + build the snapshot. No
   network wait. Target at 1x: <= 200 ms median; it should grow linearly (4x, 16x).
2. Scrape: ``generate_latest`` of the resulting registry (what one /metrics costs). Target
   <= 20 ms median.
3. WandB requests per hour at the default cadences (validators every 5 min, miners every
   30 min), measured through the real ``wandb.Api`` against the fake GraphQL server in
   ``tests/fakes/wandb_graphql.py``, next to what the original's readers make.
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


def bench_wandb() -> None:
    print("== WandB requests per hour at the default cadences (real wandb.Api, fake GraphQL server)")
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from fakes.wandb_graphql import FakeWandbGraphQL  # type: ignore[import-not-found]
    except ImportError as exc:
        print(f"   not measured: tests/fakes/wandb_graphql.py is not available ({exc})")
        return
    from exporters.core.state.wandb_store import WandbStateStore

    mem = MemoryStateStore()
    validators, miners = BASE_VALIDATORS, BASE_MINERS
    net = seed_network(mem, validators=validators, miners=miners, seed=1, max_uids=256 + validators)
    records = mem.read_runs("validator", 27) + mem.read_runs("miner", 27)
    server = FakeWandbGraphQL()
    server.start()
    try:
        for rec in records:
            server.add_run(rec.run_id, rec.name, rec.config, state=rec.state, created_at=rec.created_at)
        with tempfile.TemporaryDirectory() as tmp:
            store = WandbStateStore(
                base_url=server.base_url,
                api_key="x" * 40,
                db_path=f"{tmp}/state.db",
                run_dir=f"{tmp}/wandb",
            )
            parts = cli.build_exporter({"network_state_dir": tmp}, store=store, source=net.source())
            refresher = parts.refresher
            start = time.perf_counter()
            assert refresher.refresh("validator") and refresher.refresh("miner"), "refresh failed"
            cold = time.perf_counter() - start
            first = sum(server.requests.values())
            refresher.refresh("validator")
            after_v = sum(server.requests.values())
            refresher.refresh("miner")
            after_m = sum(server.requests.values())
            store.close()
    finally:
        server.stop()
    per_validator, per_miner = after_v - first, after_m - after_v
    hourly = per_validator * 3600 / 300 + per_miner * 3600 / 1800
    print(
        f"   runs: {len(records)} ({validators + 1} validator, {miners} miner), 50 per page; "
        f"first validator+miner refresh: {first} requests, {cold:.1f} s (fake server, loopback)"
    )
    print(f"   requests by GraphQL operation: {dict(server.requests)}")
    print(f"   per validator refresh: {per_validator}; per miner refresh: {per_miner}")
    print(f"   => {hourly:.0f} requests/hour (12 validator + 2 miner refreshes per hour)")
    pages_v, pages_m = -(-(validators + 1) // 50), -(-miners // 50)
    original = 3 * pages_v * 3 + pages_m * 2
    print(
        f"   for comparison, ONE original validator: 3 scans x {pages_v} pages per sync_scores (~3/hour) "
        f"+ {pages_m} pages of running miners every 30 min = ~{original}/hour, before register_api's "
        "reads every 10 min and the dashboard's unfiltered full-project scans"
    )


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
        bench_wandb()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
