"""Publish this participant's run state, signed, through a durable outbox.

Why an outbox: the caller (a collector refresh, a loop) hands over a payload with
:meth:`Publisher.submit`, which is a local SQLite commit and never touches the network. A
background :meth:`Publisher.flush` replays pending updates in order, merges superseded ones
into a single publish, and keeps them when the store is down, so a WandB outage or a crash
(even SIGKILL between "published" and "recorded") never loses the newest state. Republishing
the same state twice is harmless: the config merge is idempotent and the sequence number only
grows.

Where: into a run of our own, ``opencompute-exporter-{role}-{hotkey}``, whose whole config is
the v2 envelope (see :mod:`exporters.core.signing` and :mod:`exporters.core.state.naming`):
its ``payload`` is the full current state (all submitted keys merged), with an increasing
``seq`` persisted in the outbox file, so it survives restarts. The SN27 neuron's own run
``{role}-{hotkey}`` is never touched: W&B keeps one config per run and the neuron's client
sends its whole config on every update, so sharing it would erase our envelope or roll back
the neuron's ``stats`` / ``allocated_hotkeys`` / ``specs`` (which every validator reads).

"Published" (the log line, ``opencompute_publish_last_success_timestamp_seconds``,
``opencompute_publish_sequence``) means the store acknowledged the write: WandB online
returns it on read-back, SQLite committed it. Until then the entry stays in the outbox.

One writer per run: before each write the run's current envelope is compared with what this
publisher last wrote. Another envelope by the same hotkey means a second exporter publishes
with this hotkey; the publish fails with reason ``conflict`` (logged, counted) instead of
flip-flopping. A fresh outbox adopts an existing run's ``seq`` only when that envelope is older
than ``takeover_after`` (its writer stopped).

``mode="full"`` with ``into_neuron_run=True`` (``--publish.mode=full
--publish.into-neuron-run``): only for simulations and test networks where our publisher
*replaces* the original one. It writes into ``{role}-{hotkey}``: the payload keys at the top
level in the original's shapes, the envelope, ``hotkey`` and the v1 ``signature``, and
``role``, ``version``, ``config: {"netuid": N}`` only where the run lacks them. The store
changes only those keys and fails with ``conflict`` when any other key changed meanwhile.
Without ``into_neuron_run`` the ``full`` mode is refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters import __version__
from exporters.core.collector import SubCollector
from exporters.core.signing import ENVELOPE_KEY, MODES, make_envelope, normalize, sign_v1
from exporters.core.state.base import StateStore, StoreError
from exporters.core.state.naming import envelope_of, exporter_config
from exporters.core.state.outbox import DEFAULT_MAX_ENTRIES, Outbox

if TYPE_CHECKING:  # pragma: no cover
    from bittensor_core import Keypair

log = logging.getLogger(__name__)

FAILURE_REASONS = ("unavailable", "timeout", "auth", "rejected", "unconfirmed", "conflict", "error")
NEURON_RUN_DANGER = (
    "writes into the SN27 neuron's own {role}-{hotkey} run: a neuron writing that run sends its "
    "whole config on each update and erases ours, and a write of ours in between can roll back its "
    "stats/allocated_hotkeys/specs that every validator reads; only for simulations and test networks "
    "where no neuron writes the run"
)
DEFAULT_REPUBLISH_AFTER = 600.0  # re-sign unchanged state so readers can tell alive from stale


def version_as_int(version: str) -> int:
    """The original's ``__version_as_int__``: ``100*major + 10*minor + patch`` (1.9.0 -> 190)."""
    parts = [int("".join(ch for ch in p if ch.isdigit()) or 0) for p in version.split(".")[:3]]
    parts += [0] * (3 - len(parts))
    return 100 * parts[0] + 10 * parts[1] + parts[2]


class Publisher:
    """Signs and publishes one hotkey's run state for one role, via a durable outbox."""

    def __init__(
        self,
        store: StateStore,
        keypair: Keypair,
        *,
        role: str,
        netuid: int,
        outbox_path: str,
        mode: str = "envelope",
        clock: Callable[[], float] = time.time,
        version: int | None = None,
        republish_after: float | None = DEFAULT_REPUBLISH_AFTER,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        into_neuron_run: bool = False,
        takeover_after: float | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"publish mode must be one of {MODES}, got {mode!r}")
        if (mode == "full") != into_neuron_run:
            raise ValueError(
                "publish mode full needs into_neuron_run (--publish.into-neuron-run), and only it: "
                + NEURON_RUN_DANGER
            )
        self.target = "neuron" if into_neuron_run else "exporter"
        if into_neuron_run:
            log.warning("publishing into the neuron's run (--publish.into-neuron-run): %s", NEURON_RUN_DANGER)
        self.store = store
        self.role = role
        self.netuid = netuid
        self.mode = mode
        self.hotkey: str = keypair.ss58_address
        self._keypair = keypair
        self._clock = clock
        self._version = version_as_int(__version__) if version is None else version
        self._republish_after = republish_after
        self._takeover_after = (
            takeover_after if takeover_after is not None else 2 * (republish_after or 600.0)
        )
        self._outbox = Outbox(outbox_path, max_entries=max_entries, clock=clock)
        self._flush_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._attempts = 0
        self._failures = dict.fromkeys(FAILURE_REASONS, 0)
        self._entries = self._outbox.count()
        self._seq = self._outbox.published_seq()
        self._last_success = self._outbox.last_success()
        self._run_id = ""

    # ------------------------------------------------------------------ API

    def submit(self, payload: dict[str, Any]) -> int:
        """Durably enqueue ``payload`` (merged over earlier state); returns pending entries.

        Local only and fast. Raises ValueError for a payload that is not JSON-safe, so a bug
        shows up at the caller rather than as a publish that can never succeed.
        """
        body = normalize(dict(payload))
        count = self._outbox.append(body)
        with self._stats_lock:
            self._entries = count
        return count

    def flush(self) -> int:
        """Publish pending updates (merged) once; return how many outbox entries were drained.

        On a store failure the entries stay, the failure is counted by reason, and 0 is
        returned. With nothing pending, unchanged state is re-signed after ``republish_after``.
        """
        with self._flush_lock:
            pending = self._outbox.pending()
            published = self._outbox.published()
            now = self._clock()
            if pending is None and not self._due(published, now):
                return 0
            state = {**published, **(pending.updates if pending else {})}
            with self._stats_lock:
                self._attempts += 1
            try:
                seq, signature = self._publish(state, now)
            except StoreError as exc:
                self._fail(exc.reason, f"{type(exc).__name__}: {exc}")
                return 0
            except Exception as exc:  # a failed publish must not kill the loop
                self._fail("error", f"{type(exc).__name__}: {exc}")
                log.debug("publish traceback", exc_info=True)
                return 0
            drained = self._outbox.commit(state, pending.upto_id if pending else None, now, seq, signature)
            with self._stats_lock:
                self._seq = seq
                self._last_success = now
                self._entries = self._outbox.count()
            if getattr(self.store, "acknowledges", True):
                log.info(
                    "published role=%s hotkey=%s seq=%d drained=%d run=%s (acknowledged by %s)",
                    self.role,
                    self.hotkey,
                    seq,
                    drained,
                    self._run_id,
                    self.store.backend,
                )
            else:
                log.info(
                    "written offline role=%s hotkey=%s seq=%d run=%s: not on the network until synced",
                    self.role,
                    self.hotkey,
                    seq,
                    self._run_id,
                )
            return drained

    @property
    def sequence(self) -> int:
        """v2 sequence number of the last successful publish (persisted across restarts)."""
        with self._stats_lock:
            return self._seq

    @property
    def outbox_entries(self) -> int:
        """Updates waiting to be published."""
        with self._stats_lock:
            return self._entries

    def collector(self) -> SubCollector:
        """The publish metrics of docs/metrics-contract.md, read from memory (no I/O at scrape)."""
        return PublishCollector(self)

    def snapshot(self) -> dict[str, Any]:
        """Counters for the collector, taken under one lock."""
        with self._stats_lock:
            return {
                "attempts": self._attempts,
                "failures": dict(self._failures),
                "entries": self._entries,
                "last_success": self._last_success,
                "seq": self._seq,
            }

    def close(self) -> None:
        """Release the outbox connection."""
        self._outbox.close()

    # ------------------------------------------------------------------ internals

    def _due(self, published: dict[str, Any], now: float) -> bool:
        if not published or self._republish_after is None:
            return False
        last = self._last_success
        return last is None or now - last >= self._republish_after

    def _publish(self, state: dict[str, Any], now: float) -> tuple[int, str]:
        run_id = self.store.run_id_for(self.role, self.hotkey, target=self.target)
        self._run_id = run_id
        if self.target == "exporter":
            self._check_single_writer(now)
        seq = self._outbox.next_seq()
        envelope = make_envelope(
            self._keypair,
            entity_project=self.store.entity_project,
            netuid=self.netuid,
            run_id=run_id,
            role=self.role,
            payload=state,
            seq=seq,
            signed_at=now,
            mode=self.mode,
        )
        self._outbox.set_inflight(seq, envelope["signature"])
        if self.target == "exporter":
            self.store.publish(self.role, self.hotkey, exporter_config(envelope), target="exporter")
            return seq, envelope["signature"]
        updates: dict[str, Any] = dict(envelope["payload"])
        updates.update(
            {ENVELOPE_KEY: envelope, "hotkey": self.hotkey, "signature": sign_v1(self._keypair, run_id)}
        )
        defaults = {"role": self.role, "config": {"netuid": self.netuid}, "version": self._version}
        self.store.publish(self.role, self.hotkey, updates, defaults=defaults, target="neuron")
        return seq, envelope["signature"]

    def _check_single_writer(self, now: float) -> None:
        """Refuse to write when another exporter publishes with this hotkey (no flip-flop)."""
        current_config = getattr(self.store, "current_config", None)
        if not callable(current_config):
            return
        env = envelope_of(current_config(self.role, self.hotkey, target="exporter"))
        if env is None:
            return
        if env.get("hotkey") != self.hotkey:
            log.warning(
                "our run %s holds an envelope signed by %s, not by us: overwriting it",
                self._run_id,
                env.get("hotkey"),
            )
            return
        server_seq = _int(env.get("seq"))
        ours = {(self._seq, self._outbox.published_signature()), self._outbox.inflight()}
        if self._seq > 0 or self._outbox.inflight() is not None:
            # we wrote before: the run must still hold our last write (or the one sent before a crash)
            if (server_seq, env.get("signature")) not in ours:
                raise StoreError(
                    f"another exporter publishes with hotkey {self.hotkey} into run {self._run_id} "
                    f"(its seq {server_seq}, ours {self._seq}); run one exporter per hotkey",
                    reason="conflict",
                )
            return
        age = now - _float(env.get("signed_at"))
        if age < self._takeover_after:
            raise StoreError(
                f"run {self._run_id} was signed by {self.hotkey} {age:.0f}s ago by another exporter "
                f"(seq {server_seq}); taking over only after {self._takeover_after:.0f}s without writes",
                reason="conflict",
            )
        self._outbox.raise_seq(server_seq)  # continue its sequence: readers reject a lower seq

    def _fail(self, reason: str, detail: str) -> None:
        reason = reason if reason in FAILURE_REASONS else "error"
        with self._stats_lock:
            self._failures[reason] += 1
            self._entries = self._safe_count()
        log.warning(
            "publish failed role=%s reason=%s pending=%d: %s", self.role, reason, self._entries, detail
        )

    def _safe_count(self) -> int:
        try:
            return self._outbox.count()
        except StoreError:
            return self._entries


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


class PublishCollector(SubCollector):
    """Publish health for one publisher. E.g.::

    opencompute_publish_attempts_total 12.0
    opencompute_publish_failures_total{reason="unavailable"} 3.0
    opencompute_publish_outbox_entries 0.0
    opencompute_publish_last_success_timestamp_seconds 1.718e+09
    opencompute_publish_sequence 9.0
    """

    name = "publish"

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def collect(self) -> Iterator[Metric]:
        snap = self._publisher.snapshot()
        yield CounterMetricFamily(
            "opencompute_publish_attempts_total", "Signed run-state publish attempts.", value=snap["attempts"]
        )
        failures = CounterMetricFamily(
            "opencompute_publish_failures_total",
            "Failed publish attempts by reason; the updates stay in the outbox.",
            labels=["reason"],
        )
        for reason in FAILURE_REASONS:
            failures.add_metric([reason], snap["failures"][reason])
        yield failures
        yield GaugeMetricFamily(
            "opencompute_publish_outbox_entries",
            "Updates waiting in the durable outbox to be published.",
            value=snap["entries"],
        )
        if snap["last_success"] is not None:
            yield GaugeMetricFamily(
                "opencompute_publish_last_success_timestamp_seconds",
                "Unix time of the last successful publish (persisted across restarts).",
                value=snap["last_success"],
            )
        yield GaugeMetricFamily(
            "opencompute_publish_sequence",
            "v2 sequence number of the last successful publish (persisted; only grows).",
            value=snap["seq"],
        )
