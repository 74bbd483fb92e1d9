"""Sign and verify cost of run state at network scale.

The network exporter verifies every run in the project on each refresh: up to 64 validator
runs, each carrying ~256 stats entries (~60 KB of JSON), and the miner runs. Target: verify
1,000 signed runs (64 validators x 256 stats + 936 miners) in <= 150 ms.

    .venv/bin/python benchmarks/bench_signing.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bittensor_core import Keypair

from exporters.core.signing import ENVELOPE_KEY, Outcome, make_envelope, sign_v1, verify_run
from exporters.core.state.base import RunRecord

PROJECT = "neuralinternet/opencompute"
NOW = time.time()


def validator_payload(rng: random.Random, hotkeys: list[str]) -> dict:
    stats = {
        str(uid): {
            "uid": uid,
            "hotkey": hotkeys[uid],
            "gpu_specs": {"gpu_name": "NVIDIA H100 80GB HBM3", "num_gpus": rng.choice([1, 2, 4, 8])},
            "score": round(rng.random() * 100, 6),
            "allocated": rng.random() < 0.1,
            "own_score": True,
            "reliability_score": 0.0,
            "created_at": "2025-06-13 12:00:00",
        }
        for uid in range(256)
    }
    return {"stats": stats, "allocated_hotkeys": hotkeys[:20]}


def miner_payload(rng: random.Random) -> dict:
    gpus = rng.choice([1, 2, 4, 8])
    return {
        "specs": {
            "cpu": {"count": 64, "frequency": 3500.0},
            "gpu": {
                "count": gpus,
                "capacity": 81559 * gpus,
                "details": [{"name": "NVIDIA H100 80GB HBM3", "capacity": 81559}] * gpus,
                "graphics_speed": 1980,
                "memory_speed": 2619,
            },
            "hard_disk": {"total": 2 * 10**12, "free": 10**12, "used": 10**12, "write_speed": 1500.5},
            "ram": {"total": 512 * 2**30, "available": 400 * 2**30, "used": 100 * 2**30, "free": 300 * 2**30},
            "has_docker": True,
        },
        "allocated": None,
    }


def build_runs(validators: int, miners: int) -> tuple[list[tuple[RunRecord, str]], float]:
    rng = random.Random(27)
    keys = [Keypair.create_from_uri(f"//bench{i}") for i in range(validators + miners)]
    hotkeys = [k.ss58_address for k in keys] + ["5" + "x" * 47] * 256
    runs: list[tuple[RunRecord, str]] = []
    sign_seconds = 0.0
    for i, key in enumerate(keys):
        role = "validator" if i < validators else "miner"
        payload = validator_payload(rng, hotkeys) if role == "validator" else miner_payload(rng)
        run_id = f"{i:08x}"
        start = time.perf_counter()
        env = make_envelope(
            key,
            entity_project=PROJECT,
            netuid=27,
            run_id=run_id,
            role=role,
            payload=payload,
            seq=1,
            signed_at=NOW,
        )
        v1 = sign_v1(key, run_id)
        sign_seconds += time.perf_counter() - start
        config = {
            ENVELOPE_KEY: env,
            "hotkey": key.ss58_address,
            "signature": v1,
            "role": role,
            "config": {"netuid": 27},
        }
        runs.append((RunRecord(run_id=run_id, name=f"{role}-{key.ss58_address}", config=config), role))
    return runs, sign_seconds


def verify_all(runs: list[tuple[RunRecord, str]]) -> float:
    last_seq: dict[str, int] = {}
    start = time.perf_counter()
    for record, role in runs:
        result = verify_run(
            record, entity_project=PROJECT, netuid=27, role=role, now=NOW, max_age=3600, last_seq=last_seq
        )
        if result.outcome is not Outcome.VALID_V2:
            raise SystemExit(f"unexpected {result}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=64)
    parser.add_argument("--miners", type=int, default=936)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs, sign_seconds = build_runs(args.validators, args.miners)
    total = len(runs)
    payload_kb = len(str(runs[0][0].config)) / 1024
    timings = [verify_all(runs) for _ in range(args.repeat)]
    best, median = min(timings), statistics.median(timings)
    shape = f"{args.validators} validators x 256 stats, ~{payload_kb:.0f} KB each; {args.miners} miners"
    print(f"runs: {total} ({shape})")
    per_run = sign_seconds / total * 1e6
    print(f"sign (v2 envelope + v1):  {sign_seconds * 1e3:8.1f} ms total, {per_run:7.1f} us/run")
    print(f"verify, best of {args.repeat}:      {best * 1e3:8.1f} ms total, {best / total * 1e6:7.1f} us/run")
    print(f"verify, median:           {median * 1e3:8.1f} ms total, {median / total * 1e6:7.1f} us/run")
    validators = runs[: args.validators]
    v_time = min(verify_all(validators) for _ in range(args.repeat))
    print(f"  validator runs only:    {v_time / len(validators) * 1e6:7.1f} us/run")
    print(f"target <= 150 ms: {'PASS' if median <= 0.150 else 'FAIL'}")


if __name__ == "__main__":
    main()
