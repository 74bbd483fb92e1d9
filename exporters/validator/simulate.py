"""Build a realistic validator ComputeDb: the demo, the benchmark and the tests read these files.

The schema is the original's ``CREATE TABLE`` statements (``compute/utils/db.py``, v1.9.0),
written out here so a file made by :func:`create_compute_db` is indistinguishable, table for
table and column for column, from one the validator created. The data imitates a mainnet
validator with 256 uids:

* hotkeys are real sr25519 ss58 addresses (``//miner<i>``, ``//validator``);
* most miners are queryable and have 1-4 ``pog_stats`` rows (the validator keeps 4), some of
  them failed runs with NULL ``gpu_name``/``num_gpus``; non-queryable miners have none, and a
  ``stats`` row with score 0 and NULL ``gpu_specs`` (what ``sync_scores`` writes);
* some ``stats`` rows were copied from another validator (``own_score`` false) and carry the
  v1.9.0 x100 inflation (scores up to 10 000);
* a few allocations, a few blacklisted hotkeys, ``miner_details`` with the ``get_perf_info``
  shape, some reset to ``'{}'`` after five empty answers;
* optional legacy ``challenge_details`` rows with *local* isoformat timestamps.

Everything is derived from ``seed`` and ``now``, so a file is reproducible byte for byte in
content (golden tests rely on this).
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

# The original ComputeDb.init() statements, in its order (the dead ``tb`` table included).
COMPUTE_DB_DDL: tuple[str, ...] = (
    "CREATE TABLE IF NOT EXISTS miner (uid INTEGER PRIMARY KEY, ss58_address TEXT UNIQUE)",
    "CREATE TABLE IF NOT EXISTS miner_details (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT, "
    "no_specs_count INTEGER DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS tb (id INTEGER PRIMARY KEY, hotkey TEXT, details TEXT)",
    """CREATE TABLE IF NOT EXISTS challenge_details (
        uid INTEGER,
        ss58_address TEXT,
        success BOOLEAN,
        elapsed_time REAL,
        difficulty INTEGER,
        created_at TIMESTAMP,
        FOREIGN KEY (uid) REFERENCES miner(uid) ON DELETE CASCADE,
        FOREIGN KEY (ss58_address) REFERENCES miner(ss58_address) ON DELETE CASCADE
    )""",
    "CREATE TABLE IF NOT EXISTS blacklist (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT)",
    "CREATE TABLE IF NOT EXISTS allocation (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT)",
    "CREATE INDEX IF NOT EXISTS idx_uid ON challenge_details (uid)",
    "CREATE INDEX IF NOT EXISTS idx_ss58_address ON challenge_details (ss58_address)",
    "CREATE TABLE IF NOT EXISTS wandb_runs (hotkey TEXT PRIMARY KEY, run_id TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS pog_stats (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hotkey TEXT,
        gpu_name TEXT,
        num_gpus INTEGER,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY (hotkey) REFERENCES miner_details (hotkey) ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS stats (
        uid INTEGER PRIMARY KEY,
        hotkey TEXT NOT NULL,
        gpu_specs TEXT,
        score REAL,
        allocated BOOLEAN,
        own_score BOOLEAN,
        reliability_score REAL,
        created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
        FOREIGN KEY (hotkey) REFERENCES miner_details (hotkey) ON DELETE CASCADE
    )""",
)

# GPU models and their relative scores, in the spirit of the original config.yaml (B200 = 5.0).
GPU_SCORES: dict[str, float] = {
    "NVIDIA B200": 5.0,
    "NVIDIA H200": 4.0,
    "NVIDIA H100 80GB HBM3": 3.3,
    "NVIDIA H100 PCIe": 2.8,
    "NVIDIA A100-SXM4-80GB": 1.9,
    "NVIDIA L40S": 1.1,
    "NVIDIA RTX 6000 Ada Generation": 1.05,
    "NVIDIA GeForce RTX 4090": 0.69,
    "NVIDIA RTX A6000": 0.78,
}
_GPU_MEMORY_MIB = {
    "NVIDIA B200": 183359,
    "NVIDIA H200": 143771,
    "NVIDIA H100 80GB HBM3": 81559,
    "NVIDIA H100 PCIe": 81559,
    "NVIDIA A100-SXM4-80GB": 81920,
    "NVIDIA L40S": 46068,
    "NVIDIA RTX 6000 Ada Generation": 49140,
    "NVIDIA GeForce RTX 4090": 24564,
    "NVIDIA RTX A6000": 49140,
}
_GPU_COUNTS = (1, 1, 1, 2, 2, 4, 4, 8, 8, 8)

DEFAULT_NOW = datetime(2025, 6, 13, 12, 0, 0, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedDb:
    """What :func:`create_compute_db` wrote, for assertions and for the demo's other parts."""

    path: Path
    validator_hotkey: str
    hotkeys: dict[int, str]
    queryable: frozenset[int]
    allocated: tuple[str, ...]
    penalized: tuple[str, ...]


def miner_hotkey(uid: int) -> str:
    """The ss58 address of ``//miner<uid>``: stable, valid, and the same across the suite."""
    from bittensor_core import Keypair  # lazy: keeps CLI start-up fast

    return str(Keypair.create_from_uri(f"//miner{uid}").ss58_address)


def validator_hotkey() -> str:
    """The ss58 address of ``//validator``, the simulated validator's own hotkey."""
    from bittensor_core import Keypair

    return str(Keypair.create_from_uri("//validator").ss58_address)


def sqlite_timestamp(moment: datetime) -> str:
    """Format like SQLite ``CURRENT_TIMESTAMP``: UTC ``YYYY-MM-DD HH:MM:SS``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def pog_score(gpu_name: str, num_gpus: int) -> float:
    """The original ``calc_score_pog`` shape, 0..1 (1.0 = eight of the best GPU)."""
    best = max(GPU_SCORES.values())
    return GPU_SCORES.get(gpu_name, 0.0) * min(num_gpus, 8) / (best * 8)


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the original ComputeDb tables and indexes on ``conn``."""
    for statement in COMPUTE_DB_DDL:
        conn.execute(statement)
    conn.commit()


def create_compute_db(
    path: str | Path,
    *,
    miners: int = 256,
    pog_rows: int | None = None,
    challenge_rows: int = 0,
    seed: int = 0,
    now: datetime = DEFAULT_NOW,
    local_tz: tzinfo | None = UTC,
    journal_mode: str = "delete",
) -> SimulatedDb:
    """Create (or replace) a ComputeDb at ``path`` in the exact original schema, filled with data.

    ``pog_rows`` None gives the realistic 1-4 rows per queryable miner; a number spreads that
    many rows over the queryable miners (for benchmarks; the validator itself keeps 4).
    ``challenge_rows`` legacy proof-of-work rows get local isoformat timestamps in ``local_tz``.
    ``journal_mode`` is what the validator's file uses (``delete`` by default, or ``wal``).
    """
    target = Path(path)
    for suffix in ("", "-journal", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    rng = random.Random(seed)
    hotkeys = {uid: miner_hotkey(uid) for uid in range(miners)}
    own = validator_hotkey()
    plan = _plan(rng, hotkeys)
    conn = sqlite3.connect(target)
    try:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        create_schema(conn)
        with conn:
            _write_miners(conn, rng, hotkeys, plan)
            _write_pog(conn, rng, hotkeys, plan, pog_rows, now)
            _write_stats(conn, rng, hotkeys, plan, now)
            _write_allocations(conn, rng, hotkeys, plan)
            _write_challenges(conn, rng, hotkeys, challenge_rows, now, local_tz)
            conn.execute("INSERT INTO wandb_runs (hotkey, run_id) VALUES (?, ?)", (own, _run_id(rng)))
    finally:
        conn.close()
    return SimulatedDb(
        path=target,
        validator_hotkey=own,
        hotkeys=hotkeys,
        queryable=frozenset(plan.queryable),
        allocated=tuple(hotkeys[u] for u in plan.allocated),
        penalized=tuple(plan.penalized),
    )


@dataclass
class _Plan:
    queryable: list[int]
    gpus: dict[int, tuple[str, int]]
    external: set[int]
    allocated: list[int]
    penalized: list[str]
    no_specs: set[int]
    no_details: set[int]


def _plan(rng: random.Random, hotkeys: dict[int, str]) -> _Plan:
    uids = sorted(hotkeys)
    queryable = [u for u in uids if rng.random() < 0.88]
    gpus = {u: (rng.choice(list(GPU_SCORES)), rng.choice(_GPU_COUNTS)) for u in queryable}
    # Miners the validator has no PoG result for, scored from another validator's stats.
    external = {u for u in queryable if rng.random() < 0.06}
    allocated = sorted(rng.sample(queryable, k=min(len(queryable), max(1, len(queryable) // 12))))
    blacklisted = rng.sample(uids, k=min(len(uids), max(1, len(uids) // 40)))
    # One penalized hotkey is no longer registered: the list is the CLI's, not the metagraph's.
    penalized = [hotkeys[u] for u in sorted(blacklisted)] + [miner_hotkey(10_000 + rng.randrange(1000))]
    no_specs = {u for u in uids if rng.random() < 0.05}
    no_details = {u for u in uids if u not in no_specs and rng.random() < 0.03}
    return _Plan(queryable, gpus, external, allocated, penalized, no_specs, no_details)


def _perf_info(rng: random.Random, gpu: tuple[str, int] | None) -> dict[str, object]:
    gib = 1024**3
    ram = rng.choice((128, 256, 512, 1024)) * gib
    disk = rng.choice((1, 2, 4, 8)) * 1000**4
    info: dict[str, object] = {
        "cpu": {"count": rng.choice((16, 32, 64, 96)), "frequency": rng.choice((2400.0, 3000.0, 3500.0))},
        "ram": {
            "total": ram,
            "available": ram // 2,
            "used": ram // 3,
            "free": ram // 4,
            "swap_total": 0,
            "swap_used": 0,
            "swap_free": 0,
            "read_speed": 9800.0,
            "write_speed": 7600.0,
        },
        "hard_disk": {
            "total": disk,
            "free": disk // 2,
            "used": disk // 2,
            "write_speed": 1900.0,
            "read_speed": 2800.0,
        },
        "has_docker": True,
    }
    if gpu is not None:
        name, count = gpu
        mib = _GPU_MEMORY_MIB[name]
        info["gpu"] = {
            "count": count,
            "capacity": mib * count,
            "details": [{"name": name, "capacity": mib} for _ in range(count)],
            "graphics_speed": 1980,
            "memory_speed": 2619,
        }
    return info


def _write_miners(conn: sqlite3.Connection, rng: random.Random, hotkeys: dict[int, str], plan: _Plan) -> None:
    conn.executemany("INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", sorted(hotkeys.items()))
    rows = []
    for uid, hotkey in sorted(hotkeys.items()):
        if uid in plan.no_details:
            continue
        if uid in plan.no_specs:
            rows.append((hotkey, "{}", 5))  # five empty answers reset details to '{}'
            continue
        misses = 1 if rng.random() < 0.05 else 0
        rows.append((hotkey, json.dumps(_perf_info(rng, plan.gpus.get(uid))), misses))
    conn.executemany("INSERT INTO miner_details (hotkey, details, no_specs_count) VALUES (?, ?, ?)", rows)


def _write_pog(
    conn: sqlite3.Connection,
    rng: random.Random,
    hotkeys: dict[int, str],
    plan: _Plan,
    pog_rows: int | None,
    now: datetime,
) -> None:
    tested = [u for u in plan.queryable if u not in plan.external]
    if not tested:
        return
    if pog_rows is None:
        per_uid = {u: rng.randint(1, 4) for u in tested}
    else:
        per_uid = dict.fromkeys(tested, 0)
        for _ in range(pog_rows):
            per_uid[rng.choice(tested)] += 1
    # PoG rounds run every 72 minutes; rows are inserted round by round, oldest first.
    rows = []
    for uid, count in per_uid.items():
        name, gpus = plan.gpus[uid]
        flaky = rng.random() < 0.15
        for back in range(count, 0, -1):
            at = now - timedelta(minutes=72 * back - rng.randint(0, 600) / 60)
            failed = flaky and rng.random() < 0.5
            rows.append((at, hotkeys[uid], None if failed else name, None if failed else gpus))
    rows.sort(key=lambda r: r[0])
    conn.executemany(
        "INSERT INTO pog_stats (hotkey, gpu_name, num_gpus, created_at) VALUES (?, ?, ?, ?)",
        [(hk, name, n, sqlite_timestamp(at)) for at, hk, name, n in rows],
    )


def _write_stats(
    conn: sqlite3.Connection, rng: random.Random, hotkeys: dict[int, str], plan: _Plan, now: datetime
) -> None:
    penalized = set(plan.penalized)
    allocated = set(plan.allocated)
    stamp = sqlite_timestamp(now - timedelta(minutes=rng.randint(1, 19)))
    rows = []
    for uid, hotkey in sorted(hotkeys.items()):
        specs: dict[str, object] | None = None
        own_score = True
        score = 0.0
        if uid in plan.gpus:
            name, count = plan.gpus[uid]
            specs = {"gpu_name": name, "num_gpus": count}
            score = pog_score(name, count) * 100
            if uid in plan.external:
                # v1.9.0 copies another validator's 0-100 score, then multiplies by 100 again.
                own_score = False
                score = round(score * 100, 4)
        if hotkey in penalized:
            score = 0.0
        rows.append(
            (
                uid,
                hotkey,
                json.dumps(specs) if specs else None,
                round(score, 6),
                uid in allocated,
                own_score,
                0.0,
                stamp,
            )
        )
    conn.executemany(
        "INSERT INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _write_allocations(
    conn: sqlite3.Connection, rng: random.Random, hotkeys: dict[int, str], plan: _Plan
) -> None:
    rows = []
    for uid in plan.allocated:
        details = {
            "resource": hotkeys[uid],
            "regkey": f"{rng.getrandbits(64):016x}",
            "ssh_port": 4444,
            "ssh_username": "root",
            "ssh_password": "<redacted>",
            "ssh_command": "ssh root@...",
        }
        rows.append((hotkeys[uid], json.dumps(details)))
    conn.executemany("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", rows)
    conn.executemany(
        "INSERT INTO blacklist (hotkey, details) VALUES (?, ?)",
        [(hk, json.dumps({"reason": "PORT_CLOSED"})) for hk in plan.penalized],
    )


def _write_challenges(
    conn: sqlite3.Connection,
    rng: random.Random,
    hotkeys: dict[int, str],
    count: int,
    now: datetime,
    local_tz: tzinfo | None,
) -> None:
    if count <= 0 or not hotkeys:
        return
    uids = sorted(hotkeys)
    rows = []
    for _ in range(count):
        uid = rng.choice(uids)
        at = now - timedelta(seconds=rng.randint(0, 30 * 86400))
        local = at.astimezone(local_tz).replace(tzinfo=None)  # datetime.now().isoformat(): naive local
        success = rng.random() < 0.9
        rows.append(
            (
                uid,
                hotkeys[uid],
                success,
                round(rng.uniform(0.5, 30.0), 3),
                rng.randint(6, 12),
                local.isoformat(),
            )
        )
    conn.executemany(
        "INSERT INTO challenge_details (uid, ss58_address, success, elapsed_time, difficulty, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def _run_id(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(8))
