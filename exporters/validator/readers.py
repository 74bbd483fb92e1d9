"""The small tables' readers: one aggregate query each, whatever the number of uids.

``miner``, ``stats``, ``miner_details``, ``allocation`` and ``blacklist`` are read in full on
every snapshot (a few hundred rows); bad values are counted, not raised.
"""

from __future__ import annotations

import json

from peewee import SqliteDatabase

from exporters.validator.models import (
    Allocation,
    Blacklist,
    Miner,
    MinerDetails,
    Stats,
)
from exporters.validator.parsing import (
    InvalidValues,
    checked,
    parse_gpu_specs,
    to_bool,
    to_float,
    to_hotkey,
    to_int,
    to_uid,
)
from exporters.validator.records import (
    DetailsRecord,
    StatsRecord,
)


def fetch_miners(db: SqliteDatabase, bad: InvalidValues) -> dict[int, str]:
    out: dict[int, str] = {}
    for uid_raw, hotkey_raw in (
        Miner.select(Miner.uid, Miner.ss58_address).order_by(Miner.uid).tuples().execute(db)
    ):
        uid = checked(bad, "miner", "uid", to_uid, uid_raw)
        hotkey = checked(bad, "miner", "ss58_address", to_hotkey, hotkey_raw) if uid is not None else None
        if uid is not None and hotkey is not None:
            out[uid] = hotkey
    return out


def fetch_stats(db: SqliteDatabase, bad: InvalidValues) -> dict[int, StatsRecord]:
    query = Stats.select(
        Stats.uid,
        Stats.hotkey,
        Stats.gpu_specs,
        Stats.score,
        Stats.allocated,
        Stats.own_score,
        Stats.reliability_score,
        Stats.created_at,
    ).order_by(Stats.uid)
    out: dict[int, StatsRecord] = {}
    for (
        uid_raw,
        hotkey_raw,
        specs_raw,
        score_raw,
        alloc_raw,
        own_raw,
        rel_raw,
        created,
    ) in query.tuples().execute(db):
        try:
            uid, hotkey = to_uid(uid_raw), to_hotkey(hotkey_raw)
        except (ValueError, TypeError, OverflowError):
            bad.add("stats", "uid")
            continue
        out[uid] = StatsRecord(
            uid=uid,
            hotkey=hotkey,
            gpu_specs=checked(bad, "stats", "gpu_specs", parse_gpu_specs, specs_raw),
            score=None if score_raw is None else checked(bad, "stats", "score", to_float, score_raw),
            allocated=bool(checked(bad, "stats", "allocated", to_bool, alloc_raw)),
            own_score=bool(checked(bad, "stats", "own_score", to_bool, own_raw)),
            reliability_score=None
            if rel_raw is None
            else checked(bad, "stats", "reliability_score", to_float, rel_raw),
            created_at=created if isinstance(created, str) else None,
        )
    return out


def fetch_details(db: SqliteDatabase, bad: InvalidValues) -> dict[str, DetailsRecord]:
    query = MinerDetails.select(MinerDetails.hotkey, MinerDetails.details, MinerDetails.no_specs_count)
    out: dict[str, DetailsRecord] = {}
    for hotkey_raw, details_raw, misses_raw in query.tuples().execute(db):
        try:
            hotkey = to_hotkey(hotkey_raw)
        except ValueError:
            bad.add("miner_details", "hotkey")
            continue
        has_specs = False
        if isinstance(details_raw, str) and details_raw.strip():
            try:
                parsed = json.loads(details_raw)
                has_specs = isinstance(parsed, dict) and bool(parsed)
            except ValueError:
                bad.add("miner_details", "details")
        elif details_raw is not None:
            bad.add("miner_details", "details")
        misses = (
            0 if misses_raw is None else checked(bad, "miner_details", "no_specs_count", to_int, misses_raw)
        )
        out[hotkey] = DetailsRecord(hotkey, has_specs, misses or 0)
    return out


def fetch_hotkeys(
    db: SqliteDatabase, model: type[Allocation] | type[Blacklist], bad: InvalidValues
) -> tuple[str, ...]:
    out: list[str] = []
    seen: set[str] = set()
    for (raw,) in model.select(model.hotkey).order_by(model.id).tuples().execute(db):
        try:
            hotkey = to_hotkey(raw)
        except ValueError:
            bad.add(model._meta.table_name, "hotkey")
            continue
        if hotkey not in seen:
            seen.add(hotkey)
            out.append(hotkey)
    return tuple(out)
