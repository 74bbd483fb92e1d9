"""The typed snapshot of ComputeDb that collectors and the publish payload read.

Frozen dataclasses only: no SQL, no parsing. :class:`Snapshot` is what one read of the
database produced, table by table, with the failures named per table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GpuSpecs:
    """A proof-of-GPU result: the ``{"gpu_name", "num_gpus"}`` the validator publishes."""

    gpu_name: str
    num_gpus: int


@dataclass(frozen=True)
class StatsRecord:
    """One ``stats`` row, validated. ``score`` is as stored (possibly x100-inflated)."""

    uid: int
    hotkey: str
    gpu_specs: GpuSpecs | None
    score: float | None
    allocated: bool
    own_score: bool
    reliability_score: float | None
    created_at: str | None


@dataclass(frozen=True)
class DetailsRecord:
    """One ``miner_details`` row: whether it holds specs, and the validator's miss counter."""

    hotkey: str
    has_specs: bool
    no_specs_count: int


@dataclass(frozen=True)
class PogSummary:
    """Aggregate of one hotkey's ``pog_stats`` rows (newest by id, the autoincrement key)."""

    hotkey: str
    rows: int
    last_timestamp: float | None
    last_success_timestamp: float | None
    gpu: GpuSpecs | None


@dataclass(frozen=True)
class ChallengeSummary:
    """Aggregate of one uid's legacy ``challenge_details`` rows."""

    uid: int
    successes: int
    failures: int
    elapsed_avg_seconds: float | None
    last_timestamp: float | None


@dataclass(frozen=True)
class ReadError:
    """Why one table (or the whole file) could not be read: a bounded reason and a detail."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape needs from ComputeDb, read in one transaction."""

    read_at: float
    tables: frozenset[str]
    errors: Mapping[str, ReadError] = field(default_factory=dict)
    file_error: ReadError | None = None
    miners: Mapping[int, str] = field(default_factory=dict)
    stats: Mapping[int, StatsRecord] = field(default_factory=dict)
    details: Mapping[str, DetailsRecord] = field(default_factory=dict)
    allocated: tuple[str, ...] = ()
    penalized: tuple[str, ...] = ()
    pog: Mapping[str, PogSummary] = field(default_factory=dict)
    challenges: Mapping[int, ChallengeSummary] = field(default_factory=dict)
    invalid: Mapping[tuple[str, str], int] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        """True when the file opened and every table asked for was read."""
        return self.file_error is None and not self.errors

    def has(self, *tables: str) -> bool:
        """True when all of ``tables`` were read successfully in this snapshot."""
        return self.file_error is None and all(t in self.tables and t not in self.errors for t in tables)

    def error_for(self, *tables: str) -> ReadError | None:
        """The first error that keeps ``tables`` from being usable, or None."""
        if self.file_error is not None:
            return self.file_error
        for t in tables:
            if t in self.errors:
                return self.errors[t]
            if t not in self.tables:
                return ReadError("error", f"table {t} was not read")
        return None

    def uid_hotkeys(self) -> dict[int, str]:
        """uid -> hotkey: the ``miner`` table, completed by ``stats`` for uids it lacks."""
        out = {uid: rec.hotkey for uid, rec in self.stats.items()}
        out.update(self.miners)
        return dict(sorted(out.items()))

    def hotkey_uids(self) -> dict[str, int]:
        """hotkey -> uid, the inverse of :meth:`uid_hotkeys`: at most one hotkey per uid."""
        return {hotkey: uid for uid, hotkey in self.uid_hotkeys().items()}

    def queryable_uids(self) -> set[int]:
        """uids the validator's last scoring pass treated as queryable (see docs/metrics/validator.md).

        A uid counts when it is in ``miner``, its ``stats`` row carries the same hotkey (the row
        belongs to the current registration), and the validator holds proof-of-GPU evidence for
        it: ``pog_stats`` rows for the hotkey or non-null ``stats.gpu_specs``. ``sync_scores``
        deletes the PoG rows of non-queryable uids and writes them ``gpu_specs = NULL``.
        """
        out = set()
        for uid, hotkey in self.miners.items():
            rec = self.stats.get(uid)
            if rec is None or rec.hotkey != hotkey:
                continue
            if hotkey in self.pog or rec.gpu_specs is not None:
                out.add(uid)
        return out


# The published stats scale: local scores are 0..100 (calc_score_pog x 100).
SCORE_SCALE_MAX = 100.0


def normalized_score(rec: StatsRecord) -> tuple[float | None, bool]:
    """(score on the 0..100 scale, whether it was x100-inflated) for one ``stats`` row.

    v1.9.0 copies another validator's score (already 0..100) and multiplies it by 100 again, so
    ``own_score = False`` rows can reach 10 000. Such a row above 100 is divided back. Local
    rows (``own_score = True``) are never inflated and are returned as stored.
    """
    if rec.score is None:
        return None, False
    if not rec.own_score and rec.score > SCORE_SCALE_MAX:
        return rec.score / 100.0, True
    return rec.score, False
