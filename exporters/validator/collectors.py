"""Collectors that turn a ComputeDb :class:`~exporters.validator.records.Snapshot` into metrics.

All of them read the same shared snapshot (:class:`SnapshotSource`), so one scrape reads the
database once. Label cardinality is bounded by the subnet size: every labelled family is keyed
by ``uid`` (at most one series per uid, uids 0..4095), plus fixed enums.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.validator.records import Snapshot, normalized_score
from exporters.validator.schema import REASONS, DbReadError
from exporters.validator.snapshot import SnapshotSource

MINER_STATES: tuple[str, ...] = ("known", "queryable", "allocated", "penalized", "no_specs")
# (table, column) pairs whose bad values are reported, always exported (0 when clean).
CHECKED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("miner", "uid"),
    ("miner", "ss58_address"),
    ("stats", "uid"),
    ("stats", "gpu_specs"),
    ("stats", "score"),
    ("stats", "allocated"),
    ("stats", "own_score"),
    ("stats", "reliability_score"),
    ("miner_details", "hotkey"),
    ("miner_details", "details"),
    ("miner_details", "no_specs_count"),
    ("allocation", "hotkey"),
    ("blacklist", "hotkey"),
    ("pog_stats", "hotkey"),
    ("pog_stats", "num_gpus"),
    ("pog_stats", "created_at"),
    ("challenge_details", "uid"),
    ("challenge_details", "elapsed_time"),
    ("challenge_details", "created_at"),
)


class DbCollector(SubCollector):
    """Database health, per-uid identity/score/allocation from ``stats``, and miner totals.

    Example::

        opencompute_validator_db_up 1.0
        opencompute_validator_db_errors_total{reason="locked"} 2.0
        opencompute_validator_miner_info{hotkey="5F...",uid="3"} 1.0
        opencompute_validator_miner_score{uid="3"} 41.25
        opencompute_validator_miner_score_inflated{uid="3"} 0.0
        opencompute_validator_miners{state="queryable"} 223.0
    """

    name = "db"

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source.get()
        yield from self._health(snap)
        if snap.file_error is not None:
            return
        uid_hotkeys = snap.uid_hotkeys() if snap.has("miner") or snap.has("stats") else {}
        if uid_hotkeys:
            info = GaugeMetricFamily(
                "opencompute_validator_miner_info",
                "Identity of each uid the validator knows (miner table, else its stats row): constant 1.",
                labels=["uid", "hotkey"],
            )
            for uid, hotkey in uid_hotkeys.items():
                info.add_metric([str(uid), hotkey], 1.0)
            yield info
        if snap.has("stats"):
            yield from self._scores(snap)
        if snap.has("allocation") and uid_hotkeys:
            allocated = set(snap.allocated)
            fam = GaugeMetricFamily(
                "opencompute_validator_miner_allocated",
                "1 when the uid's hotkey is in the validator's allocation table (published as allocated).",
                labels=["uid"],
            )
            for uid, hotkey in uid_hotkeys.items():
                fam.add_metric([str(uid)], 1.0 if hotkey in allocated else 0.0)
            yield fam
        yield from self._totals(snap)

    def _health(self, snap: Snapshot) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "opencompute_validator_db_up",
            "1 when the validator database opened read-only and every table the enabled collectors "
            "read was read in this scrape.",
            value=1.0 if snap.up else 0.0,
        )
        errors = CounterMetricFamily(
            "opencompute_validator_db_errors_total",
            "Failed reads of the validator database, by reason (one per failed query).",
            labels=["reason"],
        )
        counts = self._source.errors
        for reason in REASONS:
            errors.add_metric([reason], float(counts.get(reason, 0)))
        yield errors
        invalid = GaugeMetricFamily(
            "opencompute_validator_db_invalid_values",
            "Values in the current database that could not be used (bad JSON, timestamp, type), "
            "by table and column; the rest of the row and the other rows are still exported.",
            labels=["table", "column"],
        )
        for table, column in CHECKED_COLUMNS:
            invalid.add_metric([table, column], float(snap.invalid.get((table, column), 0)))
        yield invalid

    def _scores(self, snap: Snapshot) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "opencompute_validator_miner_score",
            "Score the validator publishes for the uid, on the 0..100 stats scale; own_score=0 rows "
            "inflated x100 by the original v1.9.0 are divided back (see ..._score_inflated).",
            labels=["uid"],
        )
        inflated = GaugeMetricFamily(
            "opencompute_validator_miner_score_inflated",
            "1 when the stored score is an own_score=0 row above 100 (the original's x100 bug).",
            labels=["uid"],
        )
        own = GaugeMetricFamily(
            "opencompute_validator_miner_own_score",
            "1 when the validator computed the score itself (PoG), 0 when copied from another validator.",
            labels=["uid"],
        )
        for uid, rec in snap.stats.items():
            value, was_inflated = normalized_score(rec)
            if value is not None:
                score.add_metric([str(uid)], value)
            inflated.add_metric([str(uid)], 1.0 if was_inflated else 0.0)
            own.add_metric([str(uid)], 1.0 if rec.own_score else 0.0)
        yield score
        yield inflated
        yield own

    def _totals(self, snap: Snapshot) -> Iterator[Metric]:
        fam = GaugeMetricFamily(
            "opencompute_validator_miners",
            "Miners by state: known (miner table), queryable (current stats row with PoG evidence), "
            "allocated (allocation table), penalized (blacklist), no_specs (known, without usable specs).",
            labels=["state"],
        )
        if snap.has("miner"):
            fam.add_metric(["known"], float(len(snap.miners)))
        if snap.has("miner", "stats", "pog_stats"):
            fam.add_metric(["queryable"], float(len(snap.queryable_uids())))
        if snap.has("allocation"):
            fam.add_metric(["allocated"], float(len(snap.allocated)))
        if snap.has("blacklist"):
            fam.add_metric(["penalized"], float(len(snap.penalized)))
        if snap.has("miner", "miner_details"):
            fam.add_metric(["no_specs"], float(_no_specs(snap)))
        yield fam


def _no_specs(snap: Snapshot) -> int:
    """Known miners whose details are missing, ``'{}'``/unreadable, or that missed a specs round."""
    count = 0
    for hotkey in snap.miners.values():
        rec = snap.details.get(hotkey)
        if rec is None or not rec.has_specs or rec.no_specs_count > 0:
            count += 1
    return count


def _require(snap: Snapshot, *tables: str) -> None:
    """Raise DbReadError (failing only the calling collector) when one of ``tables`` is unusable."""
    if snap.file_error is not None:
        raise DbReadError(snap.file_error)
    for table in tables:
        error = snap.error_for(table)
        if error is not None:
            raise DbReadError(error, table)


class PogCollector(SubCollector):
    """Per-uid proof-of-GPU state from ``pog_stats`` (newest row by id; 4 rows kept per hotkey).

    Example::

        opencompute_validator_pog_gpu_info{gpu_name="NVIDIA H100 80GB HBM3",uid="3"} 1.0
        opencompute_validator_pog_gpus{uid="3"} 8.0
        opencompute_validator_pog_last_timestamp_seconds{uid="3"} 1.749811e+09
        opencompute_validator_pog_history_rows{uid="3"} 4.0
    """

    name = "pog"

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source.get()
        _require(snap, "pog_stats")
        if not (snap.has("miner") or snap.has("stats")):
            _require(snap, "miner")
        hotkey_uids = snap.hotkey_uids()
        info = GaugeMetricFamily(
            "opencompute_validator_pog_gpu_info",
            "GPU model of the uid's newest successful proof-of-GPU: constant 1.",
            labels=["uid", "gpu_name"],
        )
        count = GaugeMetricFamily(
            "opencompute_validator_pog_gpus",
            "Number of GPUs in the uid's newest successful proof-of-GPU.",
            labels=["uid"],
        )
        last = GaugeMetricFamily(
            "opencompute_validator_pog_last_timestamp_seconds",
            "Unix time of the uid's newest pog_stats row, successful or not.",
            labels=["uid"],
        )
        last_ok = GaugeMetricFamily(
            "opencompute_validator_pog_last_success_timestamp_seconds",
            "Unix time of the uid's newest successful pog_stats row (non-NULL gpu_name and num_gpus).",
            labels=["uid"],
        )
        rows = GaugeMetricFamily(
            "opencompute_validator_pog_history_rows",
            "pog_stats rows held for the uid's hotkey (the validator keeps the newest 4).",
            labels=["uid"],
        )
        depth = dict.fromkeys(snap.uid_hotkeys(), 0)
        # Rows of a hotkey the validator no longer maps to a uid are left out.
        mapped = sorted(
            ((hotkey_uids[hk], summary) for hk, summary in snap.pog.items() if hk in hotkey_uids),
            key=lambda pair: pair[0],
        )
        for uid, summary in mapped:
            label = str(uid)
            depth[uid] = summary.rows
            if summary.gpu is not None:
                info.add_metric([label, summary.gpu.gpu_name], 1.0)
                count.add_metric([label], float(summary.gpu.num_gpus))
            if summary.last_timestamp is not None:
                last.add_metric([label], summary.last_timestamp)
            if summary.last_success_timestamp is not None:
                last_ok.add_metric([label], summary.last_success_timestamp)
        for uid, n in sorted(depth.items()):
            rows.add_metric([str(uid)], float(n))
        yield from (info, count, last, last_ok, rows)


class ChallengeCollector(SubCollector):
    """Per-uid legacy proof-of-work results from ``challenge_details`` (only uids with rows).

    Example::

        opencompute_validator_challenges{result="success",uid="3"} 412.0
        opencompute_validator_challenges{result="failure",uid="3"} 9.0
        opencompute_validator_challenge_elapsed_seconds_avg{uid="3"} 7.31
    """

    name = "challenges"

    def __init__(self, source: SnapshotSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        snap = self._source.get()
        _require(snap, "challenge_details")
        results = GaugeMetricFamily(
            "opencompute_validator_challenges",
            "challenge_details rows held for the uid, by result (success|failure).",
            labels=["uid", "result"],
        )
        elapsed = GaugeMetricFamily(
            "opencompute_validator_challenge_elapsed_seconds_avg",
            "Average elapsed_time of the uid's challenge_details rows.",
            labels=["uid"],
        )
        last = GaugeMetricFamily(
            "opencompute_validator_challenge_last_timestamp_seconds",
            "Unix time of the uid's newest challenge_details row (stored as local time).",
            labels=["uid"],
        )
        for uid, summary in sorted(snap.challenges.items()):
            label = str(uid)
            results.add_metric([label, "success"], float(summary.successes))
            results.add_metric([label, "failure"], float(summary.failures))
            if summary.elapsed_avg_seconds is not None:
                elapsed.add_metric([label], summary.elapsed_avg_seconds)
            if summary.last_timestamp is not None:
                last.add_metric([label], summary.last_timestamp)
        yield from (results, elapsed, last)
