"""The validator's published keys have exactly the shapes the original SN27 readers accept."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from typing import Any

from validator_helpers import HOTKEYS, execute

from exporters.core.identity import Identity
from exporters.core.keys import keypair_from_uri
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.validator.payload import build_validator_payload
from exporters.validator.snapshot import SnapshotReader

ENTRY_KEYS = {
    "uid",
    "hotkey",
    "gpu_specs",
    "score",
    "allocated",
    "own_score",
    "reliability_score",
    "created_at",
}


# ---- A model of the original readers (ni-compute v1.9.0, reference section 3), written from
# ---- their described behaviour so the test states what "accepted" means.


def _verify_v1(run_id: str, config: dict[str, Any]) -> bool:
    """``verify_run``: the run's own hotkey signed sha256(run id)."""
    from bittensor_core import Keypair

    try:
        digest = hashlib.sha256(run_id.encode()).digest()
        return bool(Keypair(ss58_address=config["hotkey"]).verify(digest, bytes.fromhex(config["signature"])))
    except (KeyError, TypeError, ValueError):  # what verify_run's blanket except meets in practice
        return False


def _pick_dominant(entries: list[dict[str, Any]]) -> dict[str, Any]:
    def key(d: dict[str, Any]) -> tuple[Any, Any, Any]:
        specs = d.get("gpu_specs", {})
        return (specs.get("gpu_name"), specs.get("num_gpus"), d.get("score", 0))  # AttributeError on None

    counts = Counter(key(d) for d in entries)
    top = max(counts.values())
    winners = [k for k, n in counts.items() if n == top]
    chosen = winners[0] if len(winners) == 1 else max(winners, key=lambda k: k[2])
    entry = next(d for d in entries if key(d) == chosen)
    entry["own_score"] = True
    return entry


def original_get_stats_allocated(
    runs: list[tuple[str, dict[str, Any]]], valid: list[str], flag: bool
) -> dict:
    aggregator: dict[str, list[dict[str, Any]]] = {}
    for run_id, config in runs:
        hotkey, stats = config["hotkey"], config.get("stats", {})
        if _verify_v1(run_id, config) and stats and (hotkey in valid or not flag):
            for uid, data in stats.items():
                if (
                    data.get("own_score") is True
                    and data.get("score", 0) > 0
                    and data.get("allocated") is True
                ):
                    aggregator.setdefault(uid, []).append(data)
    result = {}
    for uid, entries in aggregator.items():
        valid_entries = [d for d in entries if d.get("score", 0) != 0]
        if not valid_entries:
            continue
        if len(valid_entries) == 1:
            valid_entries[0]["own_score"] = True
            chosen = valid_entries[0]
        else:
            chosen = _pick_dominant(valid_entries)
        result[int(uid)] = chosen  # ValueError on a non-integer key crashes the validator
    return result


def original_get_allocated_hotkeys(
    runs: list[tuple[str, dict[str, Any]]], valid: list[str], flag: bool
) -> list:
    out: list[str] = []
    for run_id, config in runs:
        hotkeys = config.get("allocated_hotkeys")
        if _verify_v1(run_id, config) and hotkeys and (config["hotkey"] in valid or not flag):
            out.extend(hotkeys)
    return out


# ---- tests


def _edge_db(empty_db) -> Any:
    path = empty_db()
    execute(path, "INSERT INTO miner (uid, ss58_address) VALUES (?, ?)", [(u, HOTKEYS[u]) for u in range(5)])
    h200 = '{"gpu_name": "NVIDIA H200", "num_gpus": 8}'
    rows = [
        (0, HOTKEYS[0], h200, 80.0, 1, 1, 0.0, "2025-06-13 11:50:00"),  # local, allocated
        (1, HOTKEYS[1], h200, 8000.0, 1, 0, 0.0, "2025-06-13 11:50:00"),  # copied, x100-inflated
        (2, HOTKEYS[2], None, 0.0, 0, 1, None, "2025-06-13 11:50:00"),  # not queryable
        (3, HOTKEYS[3], h200, 80.0, 1, 1, 0.0, "2025-06-13 11:50:00"),  # stats says allocated, table does not
        (4, HOTKEYS[4], h200, 80.0, 0, 1, 0.0, "2025-06-13 11:50:00"),  # allocated in the table only
    ]
    execute(
        path,
        "INSERT INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score,"
        " created_at) VALUES (?,?,?,?,?,?,?,?)",
        rows,
    )
    execute(
        path,
        "INSERT INTO allocation (hotkey, details) VALUES (?, '{}')",
        [(HOTKEYS[0],), (HOTKEYS[1],), (HOTKEYS[4],)],
    )
    execute(path, "INSERT INTO blacklist (hotkey, details) VALUES (?, NULL)", [(HOTKEYS[2],)])
    return path


def test_payload_has_exactly_the_original_stats_entry_shape(sim_db):
    payload = build_validator_payload(SnapshotReader(sim_db.path).read())
    assert set(payload) == {"stats", "allocated_hotkeys", "penalized_hotkeys"}
    assert list(payload["stats"]) == [str(u) for u in range(16)]
    for uid_str, entry in payload["stats"].items():
        assert set(entry) == ENTRY_KEYS
        assert entry["uid"] == int(uid_str) and type(entry["uid"]) is int
        assert entry["hotkey"] == sim_db.hotkeys[entry["uid"]]
        assert entry["gpu_specs"] is None or (
            set(entry["gpu_specs"]) == {"gpu_name", "num_gpus"}
            and type(entry["gpu_specs"]["gpu_name"]) is str
            and type(entry["gpu_specs"]["num_gpus"]) is int
        )
        assert type(entry["score"]) is float and 0.0 <= entry["score"] <= 100.0
        assert type(entry["allocated"]) is bool and type(entry["own_score"]) is bool
        assert entry["reliability_score"] is None or type(entry["reliability_score"]) is float
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", entry["created_at"])
    assert json.loads(json.dumps(payload)) == payload


def test_inflated_and_allocated_values_are_what_update_allocated_hotkeys_would_publish(empty_db):
    payload = build_validator_payload(SnapshotReader(_edge_db(empty_db)).read())
    stats = payload["stats"]
    assert stats["1"]["score"] == 80.0 and stats["1"]["own_score"] is False
    assert stats["0"]["allocated"] is True
    assert stats["3"]["allocated"] is False  # not in the allocation table
    assert stats["4"]["allocated"] is True
    assert stats["2"] == {
        "uid": 2,
        "hotkey": HOTKEYS[2],
        "gpu_specs": None,
        "score": 0.0,
        "allocated": False,
        "own_score": True,
        "reliability_score": None,
        "created_at": "2025-06-13 11:50:00",
    }
    assert payload["allocated_hotkeys"] == [HOTKEYS[0], HOTKEYS[1], HOTKEYS[4]]
    assert payload["penalized_hotkeys"] == [HOTKEYS[2]]


def test_the_original_readers_accept_a_published_payload(empty_db, tmp_path, scraper_for):
    path = _edge_db(empty_db)
    keypair = keypair_from_uri("//validator")
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    scraper = scraper_for(
        path,
        "--publish.mode=full",
        "--publish.into-neuron-run",  # a simulation: our publisher replaces the original's
        f"--publish.outbox-path={tmp_path / 'outbox.db'}",
        identity=Identity(keypair, 27, "validator", source="uri"),
        store=store,
    )
    assert scraper.parts.publish_once is not None and scraper.parts.publish_once() is True
    runs = [(r.run_id, r.config) for r in store.read_runs("validator", 27, require_key="stats")]
    assert len(runs) == 1 and runs[0][1]["hotkey"] == keypair.ss58_address

    chosen = original_get_stats_allocated(json.loads(json.dumps(runs)), [keypair.ss58_address], True)
    # Only own_score, score > 0, allocated entries qualify: uid 0 and uid 4 (uid 1 is a copied score).
    assert sorted(chosen) == [0, 4]
    assert chosen[0]["gpu_specs"] == {"gpu_name": "NVIDIA H200", "num_gpus": 8} and chosen[0]["score"] == 80
    allocated = original_get_allocated_hotkeys(runs, [keypair.ss58_address], True)
    assert allocated == [HOTKEYS[0], HOTKEYS[1], HOTKEYS[4]]
    assert runs[0][1]["penalized_hotkeys"] == [HOTKEYS[2]]
    assert original_get_stats_allocated(runs, ["5SomeoneElse"], True) == {}  # authorisation still applies

    samples = scraper.scrape()
    assert samples[("opencompute_publish_attempts_total", ())] == 1.0
    assert (
        samples[
            (
                "opencompute_identity_info",
                (("hotkey", keypair.ss58_address), ("netuid", "27"), ("role", "validator")),
            )
        ]
        == 1.0
    )
    store.close()


def test_a_failed_read_publishes_nothing(tmp_path, scraper_for):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    scraper = scraper_for(
        tmp_path / "missing.db",
        f"--publish.outbox-path={tmp_path / 'outbox.db'}",
        identity=Identity(keypair_from_uri("//validator"), 27, "validator", source="uri"),
        store=store,
    )
    assert scraper.parts.publish_once is not None and scraper.parts.publish_once() is False
    assert store.read_runs("validator", 27) == []
    store.close()
