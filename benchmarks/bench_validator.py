"""Benchmark: validator exporter scrape time and SQL statements per scrape.

Builds ComputeDb files in the original schema (exporters.validator.simulate) and scrapes the
real exporter registry (all collectors, DB reads included, rendered with generate_latest):

* stress: 256 miners, 100,000 pog_stats rows, 100,000 challenge_details rows
  - cold: a reader with no cached aggregates (exporter start): both big tables in full
  - unchanged: no write since the last scrape (PoG rounds run every 72 minutes): cached
  - appended: 256 pog_stats rows and 256 challenge_details rows inserted before every scrape
    (one PoG round, one row per miner): only the new rows are aggregated and merged
  - deleted: the same inserts plus the 256 oldest rows of each table deleted (update_pog_stats
    keeping the newest rows): the watermark no longer adds up, both tables in full
* realistic: 256 miners, the validator's own 1-4 pog_stats rows per miner, aggregates forced
* the same statement count for 16 and 256 uids (no query per uid)

Target: median <= 50 ms in the steady states (unchanged, appended); cold and deleted are
reported, not judged. Usage: ``.venv/bin/python benchmarks/bench_validator.py [--scrapes N]``
"""

from __future__ import annotations

import argparse
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from prometheus_client import generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exporters.validator import cli
from exporters.validator.simulate import DEFAULT_NOW, SimulatedDb, create_compute_db, sqlite_timestamp

TARGET_MS = 50.0
BIG = ("pog_stats", "challenge_details")


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
        self.reader = self.parts.source.reader
        self.path = path

    def scrape(self) -> tuple[float, int, int, str]:
        """One scrape with a fresh read: (seconds, SQL statements, body bytes, aggregate paths)."""
        self.parts.source.invalidate()
        self.statements.clear()
        before = Counter(self.reader.refreshes)
        start = time.perf_counter()
        body = generate_latest(self.parts.exporter.registry)
        elapsed = time.perf_counter() - start
        done = self.reader.refreshes - before
        paths = "/".join(mode for table in BIG for (t, mode) in done if t == table)
        return elapsed, len(self.statements), len(body), paths


Run = tuple[float, int, int, str]


def _report(name: str, runs: list[Run]) -> float:
    times = sorted(r[0] * 1000 for r in runs)
    median = statistics.median(times)
    p95 = times[min(len(times) - 1, math.ceil(len(times) * 0.95) - 1)]
    stmts = sorted({r[1] for r in runs})
    paths = sorted({r[3] for r in runs})
    print(
        f"  {name:<11} median {median:7.2f} ms  p95 {p95:7.2f} ms  max {times[-1]:7.2f} ms  "
        f"statements/scrape {stmts}  pog/challenge path {paths}  (n={len(runs)})"
    )
    return median


class Writer:
    """The validator's writes between scrapes: one PoG round (and legacy challenges) per call."""

    def __init__(self, db: SimulatedDb, seed: int = 7) -> None:
        self.db = db
        self.rng = random.Random(seed)
        self.minute = 0

    def _rows(self) -> tuple[list[tuple], list[tuple]]:
        self.minute += 1
        at = DEFAULT_NOW + timedelta(minutes=self.minute)
        pog, challenges = [], []
        for uid, hotkey in self.db.hotkeys.items():
            ok = self.rng.random() < 0.9
            pog.append((hotkey, "NVIDIA H200" if ok else None, 8 if ok else None, sqlite_timestamp(at)))
            challenges.append(
                (uid, hotkey, int(ok), self.rng.uniform(0.5, 20.0), 8, at.replace(tzinfo=None).isoformat())
            )
        return pog, challenges

    def append(self) -> None:
        """Insert one row per miner into both big tables, in one transaction."""
        self._write(delete=False)

    def append_and_delete(self) -> None:
        """Insert one row per miner and delete as many of the oldest rows, in both tables."""
        self._write(delete=True)

    def _write(self, delete: bool) -> None:
        pog, challenges = self._rows()
        conn = sqlite3.connect(self.db.path)
        with conn:
            conn.executemany(
                "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)", pog
            )
            conn.executemany(
                "INSERT INTO challenge_details (uid, ss58_address, success, elapsed_time, difficulty,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                challenges,
            )
            if delete:
                n = len(pog)
                conn.execute(
                    "DELETE FROM pog_stats WHERE id IN (SELECT id FROM pog_stats ORDER BY id LIMIT ?)", (n,)
                )
                conn.execute(
                    "DELETE FROM challenge_details WHERE rowid IN"
                    " (SELECT rowid FROM challenge_details ORDER BY rowid LIMIT ?)",
                    (n,),
                )
        conn.close()


def _runs(bench: Bench, count: int, before: Callable[[], None] | None = None) -> list[Run]:
    out = []
    for _ in range(count):
        if before is not None:
            before()
        out.append(bench.scrape())
    return out


def main() -> int:
    """Run every scenario and print the figures; exit 1 when a steady median misses the target."""
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
        writer = Writer(stress)
        few = max(5, args.scrapes // 5)
        print("stress: 256 uids, 100,000 pog_stats rows, 100,000 challenge_details rows")
        cold = _report("cold", _runs(bench, few, bench.reader.forget))
        unchanged = _report("unchanged", _runs(bench, args.scrapes))
        appended = _report("appended", _runs(bench, args.scrapes, writer.append))
        print("    (+256 rows per table before each scrape)")
        deleted = _report("deleted", _runs(bench, few, writer.append_and_delete))
        print("    (+256 rows and -256 oldest rows per table before each scrape)")
        print("  statements of one appended scrape:")
        writer.append()
        bench.scrape()
        for sql in bench.statements:
            print(f"    {sql[:120]}")

        real = Bench(realistic.path)
        print("realistic: 256 uids, 1-4 pog_stats rows per miner (what the validator keeps)")
        _report("full", _runs(real, args.scrapes, real.reader.forget))

        small_n = Bench(small.path).scrape()[1]
        many_n = Bench(stress.path).scrape()[1]
        print(
            f"statements per scrape: 16 uids -> {small_n}, 256 uids -> {many_n} (no N+1: {small_n == many_n})"
        )
        ok = True
        for name, median in (("unchanged", unchanged), ("appended", appended)):
            passed = median <= TARGET_MS
            ok = ok and passed
            print(
                f"target {name}: median {median:.2f} ms <= {TARGET_MS:.0f} ms: {'PASS' if passed else 'FAIL'}"
            )
        print(f"reported, not judged: cold median {cold:.2f} ms, deleted median {deleted:.2f} ms")
        return 0 if ok and small_n == many_n else 1


if __name__ == "__main__":
    raise SystemExit(main())
