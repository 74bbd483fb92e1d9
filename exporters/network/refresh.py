"""Background refresh: read each role's runs once, verify, aggregate, swap one immutable snapshot.

Why a snapshot: reading a WandB project takes seconds and costs rate-limited requests, so
scrapes never touch the store. Validator runs refresh every few minutes, miner runs every half
hour (their specs change about that often). Each refresh:

1. (validators) resolves the current validator set: chain, else the metagraph cached on disk,
   else the allowlist;
2. makes ONE ``read_runs`` call for the role, asking only for runs updated since the previous
   read (minus an overlap), merged into the cached set; a full re-read every few hours drops
   deleted runs;
3. reads the validator runs as the network does (:mod:`exporters.subnet.reading`: the
   original's trust rule, signature check and order, every run counted) for the default views
   (allocation, penalties, dominant stats), and strictly (:func:`verify_runs`: one run per
   hotkey, permit, max age, v2 content) for the divergence between the two
   (:mod:`exporters.network.divergence`); miner runs give specs and claim mismatches;
4. swaps in a new frozen :class:`Snapshot`. A failed or timed-out refresh keeps the previous
   snapshot and only updates the refresh status, so scrapes keep serving the last good data.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from exporters.core.state.base import RunRecord, StateStore, StoreError
from exporters.network import divergence
from exporters.subnet import reading, views
from exporters.subnet.trust import (
    ValidatorResolver,
    ValidatorSet,
    VerificationResult,
    Verifier,
    verify_runs,
)

log = logging.getLogger(__name__)

ROLES = ("validator", "miner")
FAILURE_REASONS = ("unavailable", "timeout", "auth", "rejected", "busy", "error")
DEFAULT_OVERLAP = 120.0  # seconds re-read before the last read, for clock skew and lagging indexes
DEFAULT_FULL_RESYNC = 6 * 3600.0


_gc_lock = threading.Lock()
_gc_state = {"depth": 0, "was_enabled": False}


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a refresh decodes and aggregates.

    A refresh allocates millions of small acyclic objects (decoded JSON); with the collector on,
    repeated full collections traverse the whole cached network and the cost grows faster than
    the network (measured: 4x the runs took 5x the time). Reference counting still frees
    everything; the collector resumes when the last concurrent refresh finishes.
    """
    with _gc_lock:
        if _gc_state["depth"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["depth"] += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_state["depth"] -= 1
            if _gc_state["depth"] == 0 and _gc_state["was_enabled"]:
                gc.enable()


def _frozen(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class RoleStatus:
    """Outcome of the latest refresh attempt for one role."""

    last_success: float = 0.0  # unix time of the last successful refresh (0 = never)
    duration: float = 0.0  # seconds the latest attempt took
    success: bool = False  # whether the latest attempt succeeded
    failures: Mapping[str, int] = field(default_factory=lambda: _frozen({}))  # reason -> count


@dataclass(frozen=True)
class Snapshot:
    """Everything the collectors export, frozen at the end of a refresh (never mutated)."""

    netuid: int
    status: Mapping[str, RoleStatus]
    trust: ValidatorSet
    validators: Mapping[str, tuple[bool, float]]  # signer hotkey -> (trusted, newest timestamp)
    runs: Mapping[tuple[str, str], int]  # (role, signature) -> runs used
    rejected: Mapping[tuple[str, str], int]  # (role, reason) -> runs excluded now
    rejections_total: Mapping[tuple[str, str], int]  # cumulative, once per run version and reason
    bad_input_total: Mapping[str, int]  # cumulative, once per run version and reason
    allocation: views.AllocationView
    penalties: views.PenaltyView
    stats: Mapping[int, views.UidStats]
    specs: tuple[views.MinerSpec, ...]
    mismatches: Mapping[tuple[int, str, str], bool]
    divergence: divergence.Divergence = field(default_factory=divergence.Divergence)
    crashes: Mapping[str, int] = field(default_factory=lambda: _frozen(dict.fromkeys(views.CRASH_REASONS, 0)))

    @classmethod
    def empty(cls, netuid: int) -> Snapshot:
        return cls(
            netuid=netuid,
            status=_frozen({role: RoleStatus() for role in ROLES}),
            trust=ValidatorSet("none", frozenset(), None),
            validators=_frozen({}),
            runs=_frozen({}),
            rejected=_frozen({}),
            rejections_total=_frozen({}),
            bad_input_total=_frozen(dict.fromkeys(views.BAD_INPUT_REASONS, 0)),
            allocation=views.AllocationView(_frozen({}), frozenset()),
            penalties=views.PenaltyView(_frozen({}), frozenset(), False),
            stats=_frozen({}),
            specs=(),
            mismatches=_frozen({}),
        )


@dataclass(frozen=True)
class _ValidatorViews:
    """The views that depend only on validator runs (reused when only miners refreshed)."""

    network: divergence.Views  # the default views: what the network computes
    runs: tuple[views.VerifiedRun, ...]  # runs the network counts
    issues: views.Issues
    crashes: Mapping[str, int]
    divergence: divergence.Divergence


@dataclass
class _RoleCache:
    records: dict[str, RunRecord] = field(default_factory=dict)
    fetched_at: float | None = None  # wall time the last successful read started
    full_at: float | None = None  # wall time of the last full (unfiltered) read
    verified: VerificationResult = field(default_factory=VerificationResult)
    last_seq: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # run id -> valid verdict
    token: int = 0


class NetworkRefresher:
    """Owns the cached runs and the current snapshot; ``refresh(role)`` runs off the scrape path."""

    def __init__(
        self,
        store: StateStore,
        resolver: ValidatorResolver,
        *,
        netuid: int = 27,
        max_run_age: float = 86400.0,
        full_resync_interval: float = DEFAULT_FULL_RESYNC,
        overlap: float = DEFAULT_OVERLAP,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        verifier: Verifier | None = None,
        penalty_authorities: Iterable[str] = (views.NI_PENALTY_AUTHORITY,),
        envelope_lookup: views.EnvelopeLookup | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.netuid = netuid
        self.max_run_age = max_run_age
        self.full_resync_interval = full_resync_interval
        self.overlap = overlap
        self.clock = clock
        self.timer = timer
        self.verifier = verifier
        self.penalty_authorities = frozenset(penalty_authorities)
        # hotkey -> its signed v2 run for the strict reading; None: the newest v2 run read here
        self.envelope_lookup = envelope_lookup
        self._v1 = reading.V1Memo()
        self._stats_memo = views.StatsMemo()
        self._lock = threading.Lock()
        self._roles = {role: _RoleCache() for role in ROLES}
        self._validator_set = ValidatorSet("none", frozenset(), None)
        self._rejections_total: Counter[tuple[str, str]] = Counter()
        self._bad_input_total: Counter[str] = Counter(dict.fromkeys(views.BAD_INPUT_REASONS, 0))
        self._counted_rejections: dict[tuple[str, str], tuple[str, float]] = {}
        self._counted_issues: dict[str, float] = {}
        self._snapshot = Snapshot.empty(netuid)
        self._validator_views: _ValidatorViews | None = None

    def records(self, role: str) -> list[RunRecord]:
        """The runs of ``role`` as last read (the cache the snapshot was built from), so other
        views (attestation) compare against the same runs without reading the store again."""
        with self._lock:
            return list(self._roles[role].records.values())

    @property
    def snapshot(self) -> Snapshot:
        """The current snapshot; reading the attribute is atomic, the object never changes."""
        return self._snapshot

    # --- refresh -----------------------------------------------------------------------------

    def begin(self, role: str) -> int:
        """A token for one attempt; a later :meth:`abandon` makes that attempt's result void."""
        with self._lock:
            return self._roles[role].token

    def refresh(self, role: str, token: int | None = None) -> bool:
        """One refresh of ``role``; returns success. Never raises for store or chain trouble."""
        with _gc_paused():
            return self._refresh(role, token)

    def _refresh(self, role: str, token: int | None) -> bool:
        started, wall = self.timer(), self.clock()
        cache = self._roles[role]
        token = cache.token if token is None else token
        try:
            vset = self.resolver.resolve(self.netuid) if role == "validator" else None
            full = cache.full_at is None or wall - cache.full_at >= self.full_resync_interval
            since = None if full or cache.fetched_at is None else cache.fetched_at - self.overlap
            records = self.store.read_runs(role, self.netuid, updated_since=since)
        except StoreError as exc:
            log.warning("refresh role=%s failed: state store %s: %s", role, exc.reason, exc)
            reason = exc.reason if exc.reason in FAILURE_REASONS else "unavailable"
            self._fail(role, token, reason, self.timer() - started)
            return False
        except Exception:
            log.exception("refresh role=%s failed", role)
            self._fail(role, token, "error", self.timer() - started)
            return False
        with self._lock:
            if token != cache.token:
                log.info("refresh role=%s finished after its timeout; result discarded", role)
                return False
            try:
                self._merge(cache, records, full, wall)
                if vset is not None:
                    self._validator_set = vset
                cache.verified = self._verify(role, cache)
                self._publish(role, self.timer() - started)
            except Exception:
                log.exception("refresh role=%s failed while aggregating; previous snapshot kept", role)
                self._fail_locked(role, "error", self.timer() - started)
                return False
        return True

    def abandon(self, role: str, token: int, reason: str, duration: float) -> None:
        """Give up on an attempt (timeout/busy): its late result will be discarded."""
        with self._lock:
            cache = self._roles[role]
            if reason == "timeout" and token == cache.token:
                cache.token += 1
            self._fail_locked(role, reason, duration)

    def _fail(self, role: str, token: int, reason: str, duration: float) -> None:
        with self._lock:
            if token == self._roles[role].token:
                self._fail_locked(role, reason, duration)

    def _fail_locked(self, role: str, reason: str, duration: float) -> None:
        old = self._snapshot.status[role]
        failures = Counter(old.failures)
        failures[reason] += 1
        status = RoleStatus(old.last_success, duration, False, _frozen(failures))
        self._snapshot = replace(self._snapshot, status=_frozen({**self._snapshot.status, role: status}))

    def _merge(self, cache: _RoleCache, records: list[RunRecord], full: bool, wall: float) -> None:
        fresh = {r.run_id: r for r in records if isinstance(r, RunRecord) and isinstance(r.run_id, str)}
        if full:
            cache.records = fresh
            cache.full_at = wall
            for gone in set(cache.verdicts) - set(fresh):
                del cache.verdicts[gone]
        else:
            cache.records.update(fresh)
        cache.fetched_at = wall

    def _verify(self, role: str, cache: _RoleCache) -> VerificationResult:
        """The strict verification (v2 envelope or v1, max age, permit for validators)."""
        return verify_runs(
            reading.read_order(cache.records.values()),
            role=role,
            netuid=self.netuid,
            entity_project=self.store.entity_project,
            now=self.clock(),
            max_age=self.max_run_age,
            trusted=self._validator_set.strict_validators if role == "validator" else None,
            registered=self._validator_set.uids if role == "miner" else None,
            last_seq=cache.last_seq,
            verifier=self.verifier,
            memo=cache.verdicts,
        )

    # --- aggregation -------------------------------------------------------------------------

    def _publish(self, role: str, duration: float) -> None:
        vset = self._validator_set
        rejected: dict[tuple[str, str], str] = {}  # (role, run_id) -> reason
        for r, cache in self._roles.items():
            for run_id, reason in cache.verified.rejected.items():
                rejected[(r, run_id)] = reason
        if role == "validator" or self._validator_views is None:
            self._validator_views = self._aggregate_validators(vset)
        vviews = self._validator_views
        stats = vviews.network.stats
        miner_issues = views.Issues()
        uids = vset.uids if vset.uids is not None else {s.hotkey: u for u, s in stats.items() if s.hotkey}
        miner_runs = []
        for run in self._roles["miner"].verified.accepted:
            if run.state != "running":
                rejected[("miner", run.run_id)] = "not_running"
            elif run.hotkey not in uids:
                rejected[("miner", run.run_id)] = "not_registered"
            else:
                miner_runs.append(run)
        specs = views.specs_view(miner_runs, uids, miner_issues)
        v2_runs = {r.run_id for r in self._roles["validator"].verified.accepted if r.signature == "v2"}
        used = Counter(("validator", "v2" if r.run_id in v2_runs else "v1_only") for r in vviews.runs)
        used.update(("miner", run.signature) for run in miner_runs)
        self._count_once(rejected, vviews.issues, miner_issues)
        old = self._snapshot.status[role]
        status = RoleStatus(self.clock(), duration, True, old.failures)
        self._snapshot = Snapshot(
            netuid=self.netuid,
            status=_frozen({**self._snapshot.status, role: status}),
            trust=vset,
            validators=_frozen(self._validators(vset)),
            runs=_frozen(used),
            rejected=_frozen(Counter((r, reason) for (r, _), reason in rejected.items())),
            rejections_total=_frozen(self._rejections_total),
            bad_input_total=_frozen(self._bad_input_total),
            allocation=vviews.network.allocation,
            penalties=vviews.network.penalties,
            stats=stats,
            specs=tuple(specs),
            mismatches=_frozen(views.claim_mismatches(specs, stats)),
            divergence=vviews.divergence,
            crashes=vviews.crashes,
        )

    def _aggregate_validators(self, vset: ValidatorSet) -> _ValidatorViews:
        """The network's views from its own reading, the strict ones, and how they differ."""
        records = list(self._roles["validator"].records.values())
        self._v1.retain(records)
        self._stats_memo.retain(r.run_id for r in records)
        net = reading.read_network(records, vset.validators, self.penalty_authorities, self._v1)
        issues = views.Issues()
        crashes: Counter[str] = Counter(dict.fromkeys(views.CRASH_REASONS, 0))
        network = divergence.Views(
            views.allocation_view(net.trusted, vset.uids, issues),
            views.penalty_view(
                net.trusted,
                self.penalty_authorities,
                issues,
                authority_runs=net.authorities,
                dict_entries=False,
            ),
            _frozen(views.stats_view(net.trusted, issues, crashes, self._stats_memo)),
        )
        accepted = self._roles["validator"].verified.accepted
        chosen = views.strict_runs(
            accepted, _first_envelope(self.envelope_lookup, _newest_envelopes(accepted))
        )
        strict = divergence.Views(
            views.allocation_view(chosen, vset.uids),
            views.penalty_view(chosen, self.penalty_authorities),
            views.stats_view(chosen, memo=self._stats_memo),
        )
        reasons = divergence.validator_reasons(
            net.trusted,
            vset.strict_validators,
            self._roles["validator"].verified.rejected,
            {run.hotkey: run for run in chosen},
        )
        return _ValidatorViews(
            network, net.trusted, issues, _frozen(crashes), divergence.compare(network, strict, reasons)
        )

    def _validators(self, vset: ValidatorSet) -> dict[str, tuple[bool, float]]:
        """Signers of validator runs that are trusted or at least registered.

        Anyone can sign a "validator" run with a throwaway key; listing every such signer would
        let them create series at will. They are counted in runs_rejected instead.
        """
        signers = self._roles["validator"].verified.signers
        known = vset.uids if vset.uids is not None else {}
        return {
            hk: (hk in vset.validators, ts)
            for hk, ts in sorted(signers.items())
            if hk in vset.validators or hk in known
        }

    def _version(self, role: str, run_id: str) -> float:
        record = self._roles[role].records.get(run_id)
        return _num(record.updated_at) if record is not None else 0.0

    def _count_once(self, rejected: dict[tuple[str, str], str], *sinks: views.Issues) -> None:
        """Advance the cumulative counters once per (run version, reason), not once per refresh."""
        for key, reason in rejected.items():
            mark = (reason, self._version(*key))
            if self._counted_rejections.get(key) != mark:
                self._counted_rejections[key] = mark
                self._rejections_total[(key[0], reason)] += 1
        for stale in set(self._counted_rejections) - set(rejected):
            del self._counted_rejections[stale]
        present = {run_id for cache in self._roles.values() for run_id in cache.records}
        by_run: dict[str, Counter[str]] = {}
        for sink in sinks:
            for run_id, counts in sink.by_run.items():
                by_run.setdefault(run_id, Counter()).update(counts)
        for run_id, counts in by_run.items():
            role = "validator" if run_id in self._roles["validator"].records else "miner"
            version = self._version(role, run_id)
            if self._counted_issues.get(run_id) == version:
                continue
            self._counted_issues[run_id] = version
            self._bad_input_total.update(counts)
        for gone in set(self._counted_issues) - present:
            del self._counted_issues[gone]


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _newest_envelopes(runs: Iterable[views.VerifiedRun]) -> views.EnvelopeLookup:
    """The default envelope lookup: each hotkey's newest valid v2 run with content among ``runs``."""
    newest: dict[str, views.VerifiedRun] = {}
    for run in runs:
        if run.signature != "v2" or not views.has_content(run):
            continue
        if run.timestamp >= newest.get(run.hotkey, run).timestamp:
            newest[run.hotkey] = run
    return newest.get


def _first_envelope(*lookups: views.EnvelopeLookup | None) -> views.EnvelopeLookup:
    """Our exporter's own signed run first (``envelope_lookup``), else an envelope in the neuron's run."""
    found = [lookup for lookup in lookups if lookup is not None]

    def envelope_of(hotkey: str) -> views.VerifiedRun | None:
        return next((run for lookup in found if (run := lookup(hotkey)) is not None), None)

    return envelope_of


class TimedRefresh:
    """The body of a refresh Loop: one attempt at a time, abandoned after ``timeout`` seconds.

    Python threads cannot be killed, so a hung read keeps its worker thread; the next tick
    reports ``busy`` instead of piling up more workers, and the late result is discarded.
    """

    def __init__(self, refresher: NetworkRefresher, role: str, timeout: float) -> None:
        self.refresher = refresher
        self.role = role
        self.timeout = timeout
        self._worker: threading.Thread | None = None

    def __call__(self) -> None:
        if self._worker is not None and self._worker.is_alive():
            log.warning("refresh role=%s still running from a previous tick; skipped", self.role)
            self.refresher.abandon(self.role, -1, "busy", 0.0)
            return
        token = self.refresher.begin(self.role)
        started = time.perf_counter()
        worker = threading.Thread(
            target=self.refresher.refresh, args=(self.role, token), name=f"refresh-{self.role}", daemon=True
        )
        self._worker = worker
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            log.warning("refresh role=%s exceeded its %.0fs timeout", self.role, self.timeout)
            self.refresher.abandon(self.role, token, "timeout", time.perf_counter() - started)
