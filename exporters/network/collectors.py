"""Scrape-time collectors over the refresher's current snapshot (never the store itself).

Each collector reads the snapshot reference once and builds fresh families from it, so one
scrape is always self-consistent even while a refresh swaps in a new snapshot. Data families
say in their HELP that they are cached. ::

    opencompute_network_refresh_success{role="validator"} 1.0
    opencompute_network_runs{role="miner",signature="v1_only"} 3.0
    opencompute_network_stats_agreeing_validators{uid="17"} 2.0
    opencompute_network_miner_claim_mismatch{field="gpu_count",hotkey="5F...",uid="17"} 1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.signing import REJECT_REASONS
from exporters.network import divergence
from exporters.network.refresh import FAILURE_REASONS, ROLES, Snapshot
from exporters.subnet import views
from exporters.subnet.trust import TRUST_SOURCES

CACHED = " Cached: as of the last successful refresh."
SIGNATURES = ("v2", "v1_only")
# Reasons the refresher adds to the verifier's own (signing.REJECT_REASONS), per role.
_COMMON = (*REJECT_REASONS, "verify_error", "invalid")
REJECT_REASON_LABELS = {
    "validator": (*_COMMON, "untrusted_validator"),
    "miner": (*_COMMON, "not_running", "not_registered"),
}

SnapshotSource = Callable[[], Snapshot]


def _gauge(name: str, doc: str, labels: list[str] | None = None, cached: bool = True) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc + (CACHED if cached else ""), labels=labels)


class RefreshCollector(SubCollector):
    """Refresh health per role and the state store's identity and request count.

    ``opencompute_network_last_refresh_timestamp_seconds{role="miner"} 1.718e9``
    """

    name = "refresh"

    def __init__(self, snapshot: SnapshotSource, store: Any) -> None:
        self.snapshot = snapshot
        self.store = store

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        last = _gauge(
            "opencompute_network_last_refresh_timestamp_seconds",
            "Unix time of the last successful refresh of this role's runs (0 = never).",
            ["role"],
            cached=False,
        )
        duration = _gauge(
            "opencompute_network_refresh_duration_seconds",
            "Seconds the latest refresh attempt of this role took.",
            ["role"],
            cached=False,
        )
        success = _gauge(
            "opencompute_network_refresh_success",
            "Whether the latest refresh attempt of this role succeeded (1) or failed (0); on failure "
            "the previous snapshot keeps being served.",
            ["role"],
            cached=False,
        )
        failures = CounterMetricFamily(
            "opencompute_network_refresh_failures",
            "Refresh attempts that failed, by reason (unavailable, timeout, auth, rejected, busy, error).",
            labels=["role", "reason"],
        )
        for role in ROLES:
            status = snap.status[role]
            last.add_metric([role], status.last_success)
            duration.add_metric([role], status.duration)
            success.add_metric([role], 1.0 if status.success else 0.0)
            for reason in FAILURE_REASONS:
                failures.add_metric([role, reason], float(status.failures.get(reason, 0)))
        yield from (last, duration, success, failures)
        yield from self._store()

    def _store(self) -> Iterator[Metric]:
        backend = str(getattr(self.store, "backend", "unknown"))
        info = _gauge(
            "opencompute_state_store_info",
            "The state store this exporter reads, by backend and entity/project.",
            ["backend", "project"],
            cached=False,
        )
        info.add_metric([backend, str(getattr(self.store, "entity_project", ""))], 1.0)
        yield info
        requests = CounterMetricFamily(
            "opencompute_state_store_requests",
            "Requests made to the state store (WandB GraphQL/HTTP calls, or SQL queries), by operation.",
            labels=["backend", "operation"],
        )
        counts = getattr(self.store, "request_counts", None)
        by_operation = counts() if callable(counts) else {"read": self.store.request_count()}
        for operation, value in sorted(by_operation.items()):
            requests.add_metric([backend, str(operation)], float(value))
        yield requests


class RunsCollector(SubCollector):
    """Run verification outcomes, bad input, and which validators are trusted.

    ``opencompute_network_runs_rejected{reason="tampered",role="miner"} 1.0``
    """

    name = "runs"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        runs = _gauge(
            "opencompute_network_runs",
            "Runs used in the views (validators: by the network's reading), by role and signature "
            "(v2 = also carries a valid signed envelope, v1_only = only the original run-id "
            "signature, content unprotected).",
            ["role", "signature"],
        )
        for role in ROLES:
            for sig in SIGNATURES:
                runs.add_metric([role, sig], float(snap.runs.get((role, sig), 0)))
        yield runs
        rejected = _gauge(
            "opencompute_network_runs_rejected",
            "Runs the strict verification excludes now, by role and bounded reason (the network's "
            "own reading of validator runs needs only the v1 signature and trust).",
            ["role", "reason"],
        )
        total = CounterMetricFamily(
            "opencompute_network_run_rejections",
            "Run rejections, counted once per run version and reason." + CACHED,
            labels=["role", "reason"],
        )
        stale = _gauge(
            "opencompute_network_runs_stale",
            "Runs the strict reading excludes because their signed time (v2) or last update (v1) is "
            "older than --network.max-run-age (the network's reading has no age rule).",
            ["role"],
        )
        for role in ROLES:
            seen = (r for ro, r in (*snap.rejected, *snap.rejections_total) if ro == role)
            for reason in dict.fromkeys((*REJECT_REASON_LABELS[role], *seen)):
                rejected.add_metric([role, reason], float(snap.rejected.get((role, reason), 0)))
                total.add_metric([role, reason], float(snap.rejections_total.get((role, reason), 0)))
            stale.add_metric([role], float(snap.rejected.get((role, "stale"), 0)))
        yield from (rejected, total, stale)
        bad = CounterMetricFamily(
            "opencompute_network_bad_input",
            "Malformed values skipped inside verified runs, by reason (once per run version)." + CACHED,
            labels=["reason"],
        )
        for reason, value in sorted(snap.bad_input_total.items()):
            bad.add_metric([reason], float(value))
        yield bad
        yield from self._trust(snap)

    def _trust(self, snap: Snapshot) -> Iterator[Metric]:
        source = _gauge(
            "opencompute_network_trust_source_info",
            "Where the trusted validator set came from: chain, cache (last good metagraph on disk), "
            "allowlist, or none.",
            ["source"],
        )
        source.add_metric([snap.trust.source if snap.trust.source in TRUST_SOURCES else "none"], 1.0)
        yield source
        fetched = _gauge(
            "opencompute_network_validator_set_timestamp_seconds",
            "Unix time the metagraph behind the validator set was read from the chain (0 = no metagraph).",
        )
        fetched.add_metric([], float(snap.trust.fetched_at or 0.0))
        yield fetched
        count = _gauge(
            "opencompute_network_trusted_validators",
            "Hotkeys in the trusted validator set (stake above --network.validator-min-stake, as the "
            "original; or allowlisted).",
        )
        count.add_metric([], float(len(snap.trust.validators)))
        yield count
        trusted = _gauge(
            "opencompute_network_validator_trusted",
            "Whether a hotkey that signed a validator run is a trusted validator (1) or not (0).",
            ["hotkey"],
        )
        updated = _gauge(
            "opencompute_network_validator_last_update_timestamp_seconds",
            "Signed time (v2) or last update (v1) of the newest verified run of this validator hotkey.",
            ["hotkey"],
        )
        for hotkey, (ok, stamp) in snap.validators.items():
            trusted.add_metric([hotkey], 1.0 if ok else 0.0)
            updated.add_metric([hotkey], stamp)
        yield from (trusted, updated)


class AllocationCollector(SubCollector):
    """Allocated miners: the union over trusted validators, with claim counts.

    ``opencompute_network_miner_allocation_claims{hotkey="5F..."} 2.0``
    """

    name = "allocation"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        view = self.snapshot().allocation
        allocated = _gauge(
            "opencompute_network_miner_allocated",
            "1 for each miner hotkey that at least one trusted validator lists as allocated.",
            ["hotkey"],
        )
        claims = _gauge(
            "opencompute_network_miner_allocation_claims",
            "How many trusted validators list this miner hotkey as allocated.",
            ["hotkey"],
        )
        gone = _gauge(
            "opencompute_network_miner_allocated_unregistered",
            "1 for an allocated miner hotkey that is no longer registered on the subnet.",
            ["hotkey"],
        )
        for hotkey, n in view.claims.items():
            allocated.add_metric([hotkey], 1.0)
            claims.add_metric([hotkey], float(n))
            if hotkey in view.unregistered:
                gone.add_metric([hotkey], 1.0)
        total = _gauge("opencompute_network_miners_allocated", "Distinct allocated miner hotkeys.")
        total.add_metric([], float(len(view.claims)))
        yield from (allocated, claims, gone, total)


class PenaltiesCollector(SubCollector):
    """Penalized miners: listed by any trusted validator (both shapes), and enforced.

    ``opencompute_network_miner_penalized{hotkey="5F...",list="penalized_hotkeys_checklist",
    status_code="PORT_CLOSED"} 1.0``
    ``opencompute_network_miner_penalty_enforced{hotkey="5F..."} 1.0``
    """

    name = "penalties"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        view = self.snapshot().penalties
        each = _gauge(
            "opencompute_network_miner_penalized",
            "1 for each miner hotkey on a trusted validator's penalty list, by list "
            "(penalized_hotkeys, penalized_hotkeys_checklist) and status code (empty when the list "
            "holds plain hotkeys). Being listed does not by itself cost rewards: see "
            "opencompute_network_miner_penalty_enforced.",
            ["hotkey", "status_code", "list"],
        )
        for hotkey, pairs in view.listed.items():
            for key, code in sorted(pairs):
                each.add_metric([hotkey, code, key], 1.0)
        total = _gauge("opencompute_network_miners_penalized", "Distinct miner hotkeys on any penalty list.")
        total.add_metric([], float(len(view.listed)))
        enforced = _gauge(
            "opencompute_network_miner_penalty_enforced",
            "1 for each miner hotkey on a penalty authority's penalized_hotkeys_checklist "
            "(--network.penalty-authority): the list the original validator applies, zeroing the "
            "miner's score.",
            ["hotkey"],
        )
        for hotkey in sorted(view.enforced):
            enforced.add_metric([hotkey], 1.0)
        enforced_total = _gauge(
            "opencompute_network_miners_penalty_enforced", "Distinct miner hotkeys whose penalty is enforced."
        )
        enforced_total.add_metric([], float(len(view.enforced)))
        seen = _gauge(
            "opencompute_network_penalty_authority_seen",
            "Whether a trusted, verified run of a penalty authority (--network.penalty-authority) is "
            "in the snapshot (1) or not (0); at 0 no penalty can be reported as enforced.",
        )
        seen.add_metric([], 1.0 if view.authority_seen else 0.0)
        yield from (each, total, enforced, enforced_total, seen)


class StatsCollector(SubCollector):
    """The dominant proof-of-GPU entry per uid (the original's vote) and how much validators agree.

    ``opencompute_network_stats_score{uid="17"} 82.5``
    """

    name = "stats"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        stats = self.snapshot().stats
        score = _gauge(
            "opencompute_network_stats_score",
            "Score of the dominant stats entry for this uid (published 0-100 scale), as the "
            "original's get_stats_allocated picks it; absent when that score is not a finite "
            "number >= 0 (counted in opencompute_network_bad_input_total).",
            ["uid"],
        )
        info = _gauge(
            "opencompute_network_stats_info",
            "Hotkey and GPU model of the dominant stats entry for this uid.",
            ["uid", "hotkey", "gpu_name"],
        )
        gpus = _gauge(
            "opencompute_network_stats_gpus",
            "GPU count of the dominant stats entry; absent when it is not an integer in 0..1024.",
            ["uid"],
        )
        reporting = _gauge(
            "opencompute_network_stats_reporting_validators",
            "Trusted validators whose stats entry for this uid entered the vote "
            "(own_score, allocated, score > 0).",
            ["uid"],
        )
        agreeing = _gauge(
            "opencompute_network_stats_agreeing_validators",
            "Entries in the vote equal to the dominant (gpu_name, num_gpus, score).",
            ["uid"],
        )
        spread = _gauge(
            "opencompute_network_stats_score_spread",
            "Highest minus lowest finite score among the entries in the vote for this uid.",
            ["uid"],
        )
        for uid, entry in stats.items():
            label = [str(uid)]
            if entry.score is not None:  # a bad score (+Inf, -1, "x") is counted, not exported
                score.add_metric(label, entry.score)
            info.add_metric([str(uid), entry.hotkey, entry.gpu_name], 1.0)
            if entry.gpu_count is not None:
                gpus.add_metric(label, entry.gpu_count)
            reporting.add_metric(label, float(entry.reporting))
            agreeing.add_metric(label, float(entry.agreeing))
            spread.add_metric(label, entry.spread)
        yield from (score, info, gpus, reporting, agreeing, spread)


class DivergenceCollector(SubCollector):
    """Where a strict reading departs from what the network computes, and why.

    ``opencompute_network_view_divergence{kind="stats",view="strict"} 3.0``
    ``opencompute_network_view_divergence_validator{hotkey="5F...",reason="duplicate_run",view="strict"} 1.0``
    ``opencompute_network_view_divergence_uid{reason="duplicate_run",uid="17",view="strict"} 1.0``
    ``opencompute_network_stats_crashing_inputs{reason="gpu_specs_null"} 1.0``
    """

    name = "divergence"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        div = snap.divergence
        counts = _gauge(
            "opencompute_network_view_divergence",
            "Items on which the strict reading (one run per validator, permit, max age, v2 content) "
            "differs from the network's (what v1.9.0 validators compute): kind allocation (miner "
            "hotkeys), stats (uids), penalty (enforced miner hotkeys).",
            ["view", "kind"],
        )
        for kind in divergence.KINDS:
            counts.add_metric(["strict", kind], float(div.counts.get(kind, 0)))
        per_validator = _gauge(
            "opencompute_network_view_divergence_validator",
            "1 for each validator the network counts that the strict reading treats differently, by "
            "reason: no_permit, stale, duplicate_run, tampered, content_differs, rejected.",
            ["view", "hotkey", "reason"],
        )
        for hotkey, reasons in div.validators.items():
            for reason in reasons:
                per_validator.add_metric(["strict", hotkey, reason], 1.0)
        per_uid = _gauge(
            "opencompute_network_view_divergence_uid",
            "1 for each uid whose dominant stats entry differs between the readings, with the most "
            "telling reason of the validators that voted on it (other: none of them has one).",
            ["view", "uid", "reason"],
        )
        for uid, reason in div.uids.items():
            per_uid.add_metric(["strict", str(uid), reason], 1.0)
        crashing = _gauge(
            "opencompute_network_stats_crashing_inputs",
            "Inputs in trusted validators' stats that make the original's get_stats_allocated raise "
            "(so v1.9.0 validators fail that sync_scores): uid_not_integer, and gpu_specs_null / "
            "gpu_specs_invalid in a contested uid. The exporter skips them.",
            ["reason"],
        )
        for reason in views.CRASH_REASONS:
            crashing.add_metric([reason], float(snap.crashes.get(reason, 0)))
        yield from (counts, per_validator, per_uid, crashing)


class SpecsCollector(SubCollector):
    """What miners claim (from their own signed, running runs) and where it contradicts PoG.

    ``opencompute_network_miner_spec_gpus{hotkey="5F...",uid="17"} 8.0``
    """

    name = "specs"

    def __init__(self, snapshot: SnapshotSource) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        info = _gauge(
            "opencompute_network_miner_spec_info",
            "GPU model a miner publishes in its specs (specs.gpu.details[0].name), keyed by uid and hotkey.",
            ["uid", "hotkey", "gpu_name"],
        )
        count = _gauge(
            "opencompute_network_miner_spec_gpus",
            "GPU count a miner publishes in its specs (specs.gpu.count).",
            ["uid", "hotkey"],
        )
        for spec in snap.specs:
            info.add_metric([str(spec.uid), spec.hotkey, spec.gpu_name], 1.0)
            count.add_metric([str(spec.uid), spec.hotkey], spec.gpu_count)
        mismatch = _gauge(
            "opencompute_network_miner_claim_mismatch",
            "1 where a miner's published GPU model or count disagrees with the dominant proof-of-GPU "
            "entry for its uid, 0 where they agree.",
            ["uid", "hotkey", "field"],
        )
        for (uid, hotkey, field), bad in sorted(snap.mismatches.items()):
            mismatch.add_metric([str(uid), hotkey, field], 1.0 if bad else 0.0)
        yield from (info, count, mismatch)


def build_collectors(
    snapshot: SnapshotSource, store: Any, enabled: dict[str, bool] | None = None
) -> list[SubCollector]:
    """The network exporter's collectors, minus the ones switched off with --no-collector.<name>."""
    every: list[SubCollector] = [
        RefreshCollector(snapshot, store),
        RunsCollector(snapshot),
        AllocationCollector(snapshot),
        PenaltiesCollector(snapshot),
        StatsCollector(snapshot),
        SpecsCollector(snapshot),
        DivergenceCollector(snapshot),
    ]
    flags = enabled or {}
    return [c for c in every if flags.get(c.name, True)]
