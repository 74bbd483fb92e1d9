"""``opencompute-exporter validator``: the validator's ComputeDb as metrics on port 9928.

Reads ``database.db`` (the validator's ``SQLITE_DB_PATH``) read-only at scrape time and, when a
wallet or key URI is configured, publishes the signed ``stats``/``allocated_hotkeys``/
``penalized_hotkeys`` run config every ``--validator.publish-interval`` (default 20 minutes,
the original's ``sync_scores`` cadence). Nothing heavy is imported at module top.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from prometheus_client.core import Metric

from exporters.core.collector import SubCollector
from exporters.core.config import (
    Flag,
    FlagSet,
    collector_flags,
    enabled_collectors,
    positive_duration,
    web_flags,
)
from exporters.core.runtime import Exporter, Loop

log = logging.getLogger(__name__)

DEFAULT_PORT = 9928
DEFAULT_PUBLISH_INTERVAL = 1200.0

COLLECTORS: tuple[tuple[str, bool, str], ...] = (
    ("db", True, "database health, per-uid identity, score and allocation, miner totals."),
    ("pog", True, "per-uid proof-of-GPU results from pog_stats."),
    ("challenges", True, "per-uid legacy proof-of-work results from challenge_details."),
    ("validator", True, "identity and publish health (publishing needs --wallet.name or --hotkey.uri)."),
)

# Tables each collector reads (the snapshot reads the union of the enabled ones).
COLLECTOR_TABLES: dict[str, tuple[str, ...]] = {
    "db": ("miner", "stats", "miner_details", "allocation", "blacklist", "pog_stats"),
    "pog": ("miner", "stats", "pog_stats"),
    "challenges": ("challenge_details",),
}
PUBLISH_TABLES: tuple[str, ...] = ("stats", "allocation", "blacklist")


def _timezone(text: str) -> tzinfo | None:
    """An IANA zone name (``Europe/Berlin``), ``UTC``, or ``local`` (this host's zone: None)."""
    name = text.strip()
    if not name or name.lower() == "local":
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def flags() -> FlagSet:
    """Every flag of the validator exporter (each mirrored by an OPENCOMPUTE_* env var)."""
    from exporters.core.identity import identity_flags

    fs = FlagSet()
    fs.add(*web_flags(DEFAULT_PORT))
    fs.add(*collector_flags(COLLECTORS))
    fs.add(
        Flag(
            "validator.db-path",
            "The validator's ComputeDb SQLite file (its SQLITE_DB_PATH); opened read-only.",
            default="database.db",
            metavar="FILE",
        ),
        Flag(
            "validator.db-busy-timeout",
            "How long a scrape waits while the validator holds a write lock before reporting 'locked'.",
            default=0.5,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "validator.local-timezone",
            "Time zone of the validator host, for challenge_details' naive local timestamps "
            "(IANA name, or 'local' for this host's zone).",
            default=None,
            convert=_timezone,
            metavar="ZONE",
        ),
        Flag(
            "validator.publish-interval",
            "How often the stats/allocated_hotkeys/penalized_hotkeys payload is rebuilt and published.",
            default=DEFAULT_PUBLISH_INTERVAL,
            convert=positive_duration,
            metavar="DURATION",
        ),
    )
    fs.add(*identity_flags("validator"))
    return fs


class ValidatorCollector(SubCollector):
    """Identity (``opencompute_identity_info``, store info) and publish health, under one name."""

    name = "validator"

    def __init__(self, parts: list[SubCollector]) -> None:
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        for part in self._parts:
            yield from part.collect()


@dataclass
class ValidatorParts:
    """What :func:`build_exporter` assembled, for tests, the benchmark and :func:`run`."""

    exporter: Exporter
    source: Any
    publisher: Any = None
    store: Any = None
    loops: list[Loop] = field(default_factory=list)
    publish_once: Callable[[], bool] | None = None


def build_exporter(
    values: dict[str, Any],
    *,
    trace: Callable[[str], None] | None = None,
    reuse_window: float = 1.0,
    identity: Any = None,
    store: Any = None,
) -> ValidatorParts:
    """Assemble the snapshot source, collectors and (with an identity) the publish loops.

    ``identity``/``store`` override what the ``--wallet``/``--hotkey.uri``/``--state`` flags
    would build (tests); ``trace`` receives every SQL statement (the benchmark counts them).
    """
    from exporters.validator.collectors import ChallengeCollector, DbCollector, PogCollector
    from exporters.validator.snapshot import SnapshotReader, SnapshotSource

    on = enabled_collectors(values, COLLECTORS)
    if on["validator"] and identity is None:
        from exporters.core.identity import build_identity

        identity = build_identity(values, "validator")
    publishing = on["validator"] and identity is not None
    tables = {t for name, ts in COLLECTOR_TABLES.items() if on[name] for t in ts}
    if publishing:
        tables.update(PUBLISH_TABLES)
    reader = SnapshotReader(
        values.get("validator_db_path") or "database.db",
        tables=tables,
        busy_timeout=float(values.get("validator_db_busy_timeout") or 0.5),
        local_tz=values.get("validator_local_timezone"),
        trace=trace,
    )
    source = SnapshotSource(reader, reuse_window=reuse_window)
    collectors: list[SubCollector] = []
    if on["db"]:
        collectors.append(DbCollector(source))
    if on["pog"]:
        collectors.append(PogCollector(source))
    if on["challenges"]:
        collectors.append(ChallengeCollector(source))
    publisher = None
    loops: list[Loop] = []
    publish_once = None
    if on["validator"]:
        from exporters.core.identity import IdentityCollector, build_publisher, build_store

        if publishing and store is None:
            store = build_store(values)
        parts: list[SubCollector] = [IdentityCollector(identity, store, "validator")]
        if publishing:
            publisher = build_publisher(values, identity, store, "validator")
        if publisher is not None:
            parts.append(publisher.collector())
            publish_once = _publish_once(source, publisher)
            loops.append(
                Loop(
                    "validator-payload",
                    float(values.get("validator_publish_interval") or DEFAULT_PUBLISH_INTERVAL),
                    publish_once,
                )
            )
            loops.append(
                Loop("publish-flush", float(values.get("publish_interval") or 60.0), publisher.flush)
            )
        collectors.append(ValidatorCollector(parts))
    exporter = Exporter("validator", collectors, loops=loops)
    return ValidatorParts(exporter, source, publisher, store, loops, publish_once)


def _publish_once(source: Any, publisher: Any) -> Callable[[], bool]:
    """Build the payload from a fresh snapshot, hand it to the outbox and try to publish it."""
    from exporters.validator.payload import build_validator_payload
    from exporters.validator.schema import DbReadError

    def publish() -> bool:
        try:
            payload = build_validator_payload(source.get())
        except DbReadError as exc:
            log.warning("not publishing validator state this round: %s", exc)
            return False
        publisher.submit(payload)
        publisher.flush()
        return True

    return publish


def run(values: dict[str, Any]) -> int:
    """Serve the validator exporter until SIGTERM/SIGINT."""
    from exporters.core.runtime import setup_logging
    from exporters.core.webconfig import load_web_config

    setup_logging(values["log_level"], values["log_format"])
    web = load_web_config(values["web_config_file"])
    parts = build_exporter(values)
    log.info("reading validator database %s (read-only)", parts.source.reader.path)
    try:
        return parts.exporter.serve(values, web)
    finally:
        if parts.publisher is not None:
            parts.publisher.close()
        close = getattr(parts.store, "close", None)
        if callable(close):
            close()
