"""Publish this participant's run state, signed, through a durable outbox.

Why an outbox: the caller (a collector refresh, a loop) hands over a payload with
:meth:`Publisher.submit`, which is a local SQLite commit and never touches the network. A
background :meth:`Publisher.flush` replays pending updates in order, merges superseded ones
into a single publish, and keeps them when the store is down, so a WandB outage or a crash
(even SIGKILL between "published" and "recorded") never loses the newest state. Republishing
the same state twice is harmless: the config merge is idempotent and the sequence number only
grows.

Every publish writes, into the run config:

- ``opencompute``: the v2 envelope (see :mod:`exporters.core.signing`), whose ``payload`` is
  the full current state (all submitted keys merged), with an increasing ``seq`` that is
  persisted in the outbox file and therefore survives restarts.
- ``hotkey`` and ``signature``: the original v1 signature over the run id, so the original
  SN27 code still accepts the run.

Two modes:

``envelope`` (default)
    Only the envelope, ``hotkey`` and ``signature`` are written, plus ``role`` and
    ``config: {"netuid": N}`` when the run does not have them yet (the original's server-side
    filters select on ``config.role`` and ``config.config.netuid``). Top-level keys written
    by anyone else are left alone; readers that verify v2 use the signed payload only.

``full``
    For operators who run our publisher *instead of* the original: the payload keys are also
    written at the top level in the original's shapes (``specs``, ``allocated``, ``stats``,
    ``allocated_hotkeys``, ...), plus ``role``, ``version`` (``100*major + 10*minor + patch``)
    and ``config: {"netuid": N}``, so the original's readers find what they expect. v2
    readers then also check that every top-level copy equals the signed payload.
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
from exporters.core.state.outbox import DEFAULT_MAX_ENTRIES, Outbox

if TYPE_CHECKING:  # pragma: no cover
    from bittensor_core import Keypair

log = logging.getLogger(__name__)

FAILURE_REASONS = ("unavailable", "timeout", "auth", "rejected", "error")
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
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"publish mode must be one of {MODES}, got {mode!r}")
        self.store = store
        self.role = role
        self.netuid = netuid
        self.mode = mode
        self.hotkey: str = keypair.ss58_address
        self._keypair = keypair
        self._clock = clock
        self._version = version_as_int(__version__) if version is None else version
        self._republish_after = republish_after
        self._outbox = Outbox(outbox_path, max_entries=max_entries, clock=clock)
        self._flush_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._attempts = 0
        self._failures = dict.fromkeys(FAILURE_REASONS, 0)
        self._entries = self._outbox.count()
        self._seq = self._outbox.published_seq()
        self._last_success = self._outbox.last_success()

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
                seq = self._publish(state, now)
            except StoreError as exc:
                self._fail(exc.reason, f"{type(exc).__name__}: {exc}")
                return 0
            except Exception as exc:  # a failed publish must not kill the loop
                self._fail("error", f"{type(exc).__name__}: {exc}")
                log.debug("publish traceback", exc_info=True)
                return 0
            drained = self._outbox.commit(state, pending.upto_id if pending else None, now, seq)
            with self._stats_lock:
                self._seq = seq
                self._last_success = now
                self._entries = self._outbox.count()
            log.info("published role=%s hotkey=%s seq=%d drained=%d", self.role, self.hotkey, seq, drained)
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

    def _publish(self, state: dict[str, Any], now: float) -> int:
        run_id = self.store.run_id_for(self.role, self.hotkey)
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
        updates: dict[str, Any] = {}
        defaults: dict[str, Any] = {"role": self.role, "config": {"netuid": self.netuid}}
        if self.mode == "full":
            updates.update(envelope["payload"])
            for key, value in (*defaults.items(), ("version", self._version)):
                updates.setdefault(key, value)
            defaults = {}
        updates.update(
            {ENVELOPE_KEY: envelope, "hotkey": self.hotkey, "signature": sign_v1(self._keypair, run_id)}
        )
        if getattr(self.store, "supports_defaults", False):
            self.store.publish(self.role, self.hotkey, updates, defaults=defaults)  # type: ignore[call-arg]
        else:
            self.store.publish(self.role, self.hotkey, {**defaults, **updates})
        return seq

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
