"""Benchmark: validator exporter scrape time and SQL statements per scrape.

Builds ComputeDb files in the original schema (exporters.validator.simulate) and scrapes the
real exporter registry (all collectors, DB reads included, rendered with generate_latest):

* stress: 256 miners, 100,000 pog_stats rows, 100,000 challenge_details rows
  - steady: tables unchanged since the last scrape (the usual case: PoG rounds run every
    72 minutes, challenge_details has no writer in v1.9.0)
  - changed: a row is inserted into both big tables before every scrape, so both GROUP BY
    aggregates run every time (the worst case)
* realistic: 256 miners, the validator's own 1-4 pog_stats rows per miner, aggregates forced
* the same statement count for 16 and 256 uids (no query per uid)

Target: steady scrape median <= 50 ms. Usage: ``.venv/bin/python benchmarks/bench_validator.py``
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporters.validator import cli
from exporters.validator.simulate import create_compute_db

TARGET_MS = 50.0


def _values(path: Path) -> dict:
    flagset = cli.flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args([f"--validator.db-path={path}"]), environ={})


class Bench:
    """The real exporter over one database, with a statement counter."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        self.parts = cli.build_exporter(_values(path), trace=self.statements.append)
        self.path = path

    def scrape(self) -> tuple[float, int, int]:
        """One scrape with a fresh read: (seconds, SQL statements, body bytes)."""
        self.parts.source.invalidate()
        self.statements.clear()
        start = time.perf_counter()
        body = generate_latest(self.parts.exporter.registry)
        return time.perf_counter() - start, len(self.statements), len(body)


def _report(name: str, runs: list[tuple[float, int, int]]) -> float:
    times = sorted(r[0] * 1000 for r in runs)
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
    stmts = sorted({r[1] for r in runs})
    print(
        f"  {name:<34} median {median:7.2f} ms  p95 {p95:7.2f} ms  max {times[-1]:7.2f} ms  "
        f"statements/scrape {stmts}  body {runs[-1][2] / 1024:.0f} KiB  (n={len(runs)})"
    )
    return median


def _touch(path: Path, hotkey: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus) VALUES (?, 'NVIDIA H200', 8)", (hotkey,)
        )
        conn.execute(
            "INSERT INTO challenge_details (uid, ss58_address, success, elapsed_time, difficulty, created_at)"
            " VALUES (0, ?, 1, 3.5, 8, '2025-06-13T12:00:00')",
            (hotkey,),
        )
    conn.close()


def main() -> int:
    """Run every scenario and print the figures; exit 1 when the steady median misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        start = time.perf_counter()
        stress = create_compute_db(
            d / "stress.db", miners=256, pog_rows=100_000, challenge_rows=100_000, seed=1
        )
        print(
            f"stress ComputeDb built in {time.perf_counter() - start:.1f} s "
            f"({stress.path.stat().st_size / 2**20:.1f} MiB)"
        )
        realistic = create_compute_db(d / "realistic.db", miners=256, seed=1)
        small = create_compute_db(d / "small.db", miners=16, pog_rows=1000, challenge_rows=1000, seed=1)

        bench = Bench(stress.path)
        cold = bench.scrape()
        print("stress: 256 uids, 100,000 pog_stats rows, 100,000 challenge_details rows")
        _report("first scrape (cold, aggregates)", [cold])
        steady = _report("steady (tables unchanged)", [bench.scrape() for _ in range(args.scrapes)])
        changed = []
        for _ in range(max(5, args.scrapes // 3)):
            _touch(stress.path, stress.hotkeys[0])
            changed.append(bench.scrape())
        _report("changed (both aggregates rerun)", changed)
        print("  statements of one steady scrape:")
        bench.scrape()
        for sql in bench.statements:
            print(f"    {sql[:110]}")

        real = Bench(realistic.path)
        runs = []
        for _ in range(args.scrapes):
            real.parts.source.reader._cache.clear()  # force the aggregates every time
            runs.append(real.scrape())
        print("realistic: 256 uids, 1-4 pog_stats rows per miner (what the validator keeps)")
        _report("every scrape aggregates", runs)

        few = Bench(small.path).scrape()[1]
        many = Bench(stress.path).scrape()[1]
        print(f"statements per scrape: 16 uids -> {few}, 256 uids -> {many} (no N+1: {few == many})")
        ok = steady <= TARGET_MS
        print(f"target: steady median <= {TARGET_MS:.0f} ms: {'met' if ok else 'MISSED'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
