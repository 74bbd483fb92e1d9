"""Attested vs published: the neuron's own run next to our exporter's signed run, per hotkey.

Why: a neuron's run (``{role}-{hotkey}``, v1) proves only "this hotkey signed this run id once";
its ``allocated_hotkeys`` or ``specs`` can say anything. Our exporters sign what they read from
the validator's ComputeDb or the miner's NVML into their own run
(``opencompute-exporter-{role}-{hotkey}``, v2, content-bound). Binding the two by the signing
hotkey shows where what a neuron publishes differs from what its own host reports:

- validators: ``allocated_hotkeys`` as the neuron published it vs as our exporter signed it;
- miners: GPU count and model (``specs.gpu.count``, ``specs.gpu.details[0].name``).

Our runs are trusted only through the envelope signature: a run carrying our name but signed by
another hotkey is counted as ``name_mismatch`` and ignored; two valid runs of ours signed by one
hotkey (two exporters with one key) are counted as ``duplicate`` and the highest ``seq`` wins.
Per-hotkey series exist only for registered hotkeys (trusted validators for the validator
role), so a throwaway key cannot create series.

The neurons' runs come from the network refresher's cache (``neuron_runs``: the same runs the
views were built from, no second read of the store); our runs are read here, one read per role
per interval. Our validators' verified runs are also the strict reading's v2 content
(:meth:`AttestationRefresher.envelope`). ``NetworkInputsCollector`` turns "no runs",
"no trust source" and "store unreadable" into ``opencompute_network_input_ok{check}``, a failed
collector (``/health`` degraded) and one log line per change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.signing import Outcome, verify_run
from exporters.core.state.base import RunRecord, StoreError
from exporters.core.state.naming import exporter_run_name
from exporters.subnet.trust import verified_run
from exporters.subnet.views import VerifiedRun

log = logging.getLogger(__name__)

ROLES = ("validator", "miner")
FIELDS = {"validator": ("allocated_hotkeys",), "miner": ("gpu_count", "gpu_model")}
RUN_STATUSES = ("valid", "rejected", "name_mismatch", "duplicate")
COVERAGE = ("both", "neuron_only", "exporter_only")
INPUT_CHECKS = ("store", "trust", "runs")


@dataclass(frozen=True)
class Attestation:
    """One refresh's comparison; frozen, read by the collector."""

    runs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (role, status) -> runs
    coverage: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (role, coverage) -> hotkeys
    matches: Mapping[tuple[str, str, str], bool] = field(default_factory=dict)  # (role, hotkey, field)
    allocation_difference: Mapping[str, int] = field(default_factory=dict)  # validator -> |sym. diff|
    success: bool = False
    last_success: float = 0.0
    failure: str | None = None


def _fields(role: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The compared fields of one payload (absent when the payload lacks them)."""
    if role == "validator":
        listed = payload.get("allocated_hotkeys")
        return (
            {"allocated_hotkeys": frozenset(h for h in listed if isinstance(h, str))}
            if isinstance(listed, list)
            else {}
        )
    gpu = (payload.get("specs") or {}).get("gpu") if isinstance(payload.get("specs"), dict) else None
    if not isinstance(gpu, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(gpu.get("count"), (int, float)) and not isinstance(gpu.get("count"), bool):
        out["gpu_count"] = float(gpu["count"])
    details = gpu.get("details")
    if isinstance(details, list) and details and isinstance(details[0], dict):
        out["gpu_model"] = details[0].get("name")
    return out


class AttestationRefresher:
    """Reads the neurons' runs and ours, verifies both, and compares them by hotkey."""

    def __init__(
        self,
        store: Any,
        registered: Callable[[], tuple[frozenset[str], Mapping[str, int] | None]],
        *,
        netuid: int,
        max_run_age: float | None = 86400.0,
        clock: Callable[[], float] = time.time,
        neuron_runs: Callable[[str], list[RunRecord]] | None = None,
    ) -> None:
        self.store = store
        # role -> the neurons' runs; None: read them from the store (standalone use, tests)
        self._neuron_runs = neuron_runs
        self._envelopes: dict[str, VerifiedRun] = {}
        self.netuid = netuid
        self.max_run_age = max_run_age
        self._registered = registered  # () -> (trusted validators, hotkey -> uid or None)
        self._clock = clock
        self._lock = threading.Lock()
        self._current = Attestation()

    def envelope(self, hotkey: str) -> VerifiedRun | None:
        """Our validator exporter's signed run for ``hotkey`` (as of the last refresh), for the
        strict reading's v2 content binding (:class:`~exporters.network.refresh.NetworkRefresher`)."""
        return self._envelopes.get(hotkey)

    @property
    def current(self) -> Attestation:
        with self._lock:
            return self._current

    def refresh(self) -> bool:
        """One comparison of both roles; on a store failure the last good one is kept."""
        now = self._clock()
        try:
            per_role = {role: self._role(role, now) for role in ROLES}
        except StoreError as exc:
            log.warning("attestation refresh failed (%s): %s", exc.reason, exc)
            with self._lock:
                self._current = Attestation(
                    **{**self._current.__dict__, "success": False, "failure": exc.reason}
                )
            return False
        runs: dict[tuple[str, str], int] = {}
        coverage: dict[tuple[str, str], int] = {}
        matches: dict[tuple[str, str, str], bool] = {}
        difference: dict[str, int] = {}
        for role_runs, role_coverage, role_matches, role_diff in per_role.values():
            runs.update(role_runs)
            coverage.update(role_coverage)
            matches.update(role_matches)
            difference.update(role_diff)
        with self._lock:
            self._current = Attestation(runs, coverage, matches, difference, True, now, None)
        return True

    def _role(self, role: str, now: float) -> tuple[dict, dict, dict, dict]:
        published = self._neuron_runs(role) if self._neuron_runs else self.store.read_runs(role, self.netuid)
        neuron = self._neuron_fields(role, published, now)
        exporter_runs = getattr(self.store, "read_exporter_runs", None)
        records = exporter_runs(role, self.netuid) if callable(exporter_runs) else []
        ours, statuses = self._exporter_fields(role, records, now)
        trusted, uids = self._registered()
        allowed = (
            (lambda hk: hk in trusted)
            if role == "validator"
            else (lambda hk: uids is not None and hk in uids)
        )
        coverage = Counter()
        matches: dict[tuple[str, str, str], bool] = {}
        difference: dict[str, int] = {}
        for hotkey in set(neuron) | set(ours):
            if not allowed(hotkey):
                continue
            side = (
                "both"
                if hotkey in neuron and hotkey in ours
                else ("neuron_only" if hotkey in neuron else "exporter_only")
            )
            coverage[side] += 1
            if side != "both":
                continue
            for name in FIELDS[role]:
                if name in neuron[hotkey] and name in ours[hotkey]:
                    matches[(role, hotkey, name)] = neuron[hotkey][name] == ours[hotkey][name]
            if (
                role == "validator"
                and "allocated_hotkeys" in neuron[hotkey]
                and "allocated_hotkeys" in ours[hotkey]
            ):
                difference[hotkey] = len(
                    neuron[hotkey]["allocated_hotkeys"] ^ ours[hotkey]["allocated_hotkeys"]
                )
        runs = {(role, status): statuses.get(status, 0) for status in RUN_STATUSES}
        return runs, {(role, c): coverage.get(c, 0) for c in COVERAGE}, matches, difference

    def _verify(self, record: RunRecord, role: str, now: float) -> Any:
        return verify_run(
            record,
            entity_project=self.store.entity_project,
            netuid=self.netuid,
            role=role,
            now=now,
            max_age=self.max_run_age,
        )

    def _neuron_fields(self, role: str, records: list[RunRecord], now: float) -> dict[str, dict[str, Any]]:
        """Newest verified neuron run per hotkey (v1, as the original reads them)."""
        out: dict[str, dict[str, Any]] = {}
        for record in sorted(records, key=lambda r: -float(r.created_at or 0)):
            result = self._verify(record, role, now)
            if result.ok and result.hotkey and result.hotkey not in out:
                out[result.hotkey] = _fields(role, result.payload)
        return out

    def _exporter_fields(
        self, role: str, records: list[RunRecord], now: float
    ) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
        statuses: Counter[str] = Counter()
        best: dict[str, tuple[int, dict[str, Any]]] = {}
        envelopes: dict[str, VerifiedRun] = {}
        for record in records:
            result = self._verify(record, role, now)
            if result.outcome is not Outcome.VALID_V2 or not result.hotkey:
                statuses["rejected"] += 1
                continue
            if record.name != exporter_run_name(role, result.hotkey):
                statuses["name_mismatch"] += 1
                continue
            seq = result.seq or 0
            if result.hotkey in best:
                statuses["duplicate"] += 1
                if seq <= best[result.hotkey][0]:
                    continue
            else:
                statuses["valid"] += 1
            best[result.hotkey] = (seq, _fields(role, result.payload))
            run = verified_run(record, role, result)
            if run is not None:
                envelopes[result.hotkey] = run
        if role == "validator":
            self._envelopes = envelopes  # swapped whole: readers see one refresh or the next
        return {hk: fields for hk, (_, fields) in best.items()}, statuses


CACHED = " Cached: as of the last successful refresh."


def _cached(name: str, documentation: str, **kwargs: Any) -> GaugeMetricFamily:
    """A family of refreshed (not live) data says so in its HELP, like the other network families."""
    return GaugeMetricFamily(name, documentation + CACHED, **kwargs)


class AttestationCollector(SubCollector):
    """Neuron-published vs exporter-signed, per hotkey. E.g.::

    opencompute_network_attestation_match{field="allocated_hotkeys",hotkey="5F...",role="validator"} 0.0
    opencompute_network_attestation_allocated_hotkeys_difference{hotkey="5F..."} 3.0
    opencompute_network_attestation_hotkeys{coverage="both",role="miner"} 12.0
    opencompute_network_attestation_runs{role="miner",status="duplicate"} 1.0
    """

    name = "attestation"

    def __init__(self, refresher: AttestationRefresher) -> None:
        self._refresher = refresher

    def collect(self) -> Iterator[Metric]:
        cur = self._refresher.current
        runs = _cached(
            "opencompute_network_attestation_runs",
            "Our exporters' runs read, by role and status (name_mismatch: our name, another signer; "
            "duplicate: a second valid run of one hotkey, i.e. two exporters with one key).",
            labels=["role", "status"],
        )
        for (role, status), count in sorted(cur.runs.items()):
            runs.add_metric([role, status], count)
        yield runs
        coverage = _cached(
            "opencompute_network_attestation_hotkeys",
            "Registered hotkeys with a verified neuron run, one of our signed runs, or both.",
            labels=["role", "coverage"],
        )
        for (role, side), count in sorted(cur.coverage.items()):
            coverage.add_metric([role, side], count)
        yield coverage
        match = _cached(
            "opencompute_network_attestation_match",
            "1 when the neuron's published field equals what our exporter signed from the host, else 0.",
            labels=["role", "hotkey", "field"],
        )
        for (role, hotkey, name), same in sorted(cur.matches.items()):
            match.add_metric([role, hotkey, name], 1.0 if same else 0.0)
        yield match
        diff = _cached(
            "opencompute_network_attestation_allocated_hotkeys_difference",
            "Miners in exactly one of a validator's two lists (neuron-published vs exporter-signed).",
            labels=["hotkey"],
        )
        for hotkey, count in sorted(cur.allocation_difference.items()):
            diff.add_metric([hotkey], count)
        yield diff
        yield _cached(
            "opencompute_network_attestation_refresh_success",
            "Whether the latest attestation refresh read and compared both kinds of runs.",
            value=1.0 if cur.success else 0.0,
        )
        if cur.last_success:
            yield _cached(
                "opencompute_network_attestation_last_success_timestamp_seconds",
                "Unix time of the last successful attestation refresh.",
                value=cur.last_success,
            )


class DegradedInputs(RuntimeError):
    """The network exporter runs but has nothing trustworthy to export (logged once per change)."""

    quiet = True


class NetworkInputsCollector(SubCollector):
    """``opencompute_network_input_ok{check}``: is the store readable, is there a trust source,
    were runs found. E.g.::

    opencompute_network_input_ok{check="runs"} 0.0
    """

    name = "network_inputs"

    def __init__(self, snapshot: Callable[[], Any]) -> None:
        self._snapshot = snapshot
        self._last: tuple[str, ...] | None = None
        self._lock = threading.Lock()

    def checks(self) -> dict[str, bool]:
        snap = self._snapshot()
        status = getattr(snap, "status", {}) or {}
        return {
            "store": any(getattr(s, "success", False) for s in status.values()),
            "trust": getattr(getattr(snap, "trust", None), "source", "none") != "none",
            "runs": sum((getattr(snap, "runs", {}) or {}).values()) > 0,
        }

    def collect(self) -> Iterator[Metric]:
        checks = self.checks()
        failing = tuple(name for name in INPUT_CHECKS if not checks[name])
        self._log_change(failing)
        family = _cached(
            "opencompute_network_input_ok",
            "1 when the input is usable: store (a refresh read the store), trust (a validator set "
            "source exists), runs (verified runs were found).",
            labels=["check"],
        )
        for name in INPUT_CHECKS:
            family.add_metric([name], 1.0 if checks[name] else 0.0)
        yield family

    def failing(self) -> tuple[str, ...]:
        checks = self.checks()
        return tuple(name for name in INPUT_CHECKS if not checks[name])

    def _log_change(self, failing: tuple[str, ...]) -> None:
        with self._lock:
            if failing == self._last:
                return
            self._last = failing
        if failing:
            log.warning(
                "network exporter degraded: %s (store: the store cannot be read; trust: no chain, cached "
                "metagraph or allowlist; runs: no verified run found)",
                ", ".join(failing),
            )
        else:
            log.info("network exporter inputs ok: store read, trust source present, runs found")


class NetworkHealthCollector(SubCollector):
    """Emits nothing; fails while an input check fails, so ``/health`` says degraded and
    ``opencompute_scrape_collector_success{collector="network_health"}`` is 0."""

    name = "network_health"

    def __init__(self, inputs: NetworkInputsCollector) -> None:
        self._inputs = inputs

    def collect(self) -> Iterator[Metric]:
        failing = self._inputs.failing()
        if failing:
            raise DegradedInputs(f"degraded: {', '.join(failing)}")
        return iter(())
