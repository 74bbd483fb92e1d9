"""XID errors from NVML events, counted in a background thread so a scrape never waits on NVML.

XIDs are driver-reported GPU faults (79 = fell off the bus, 48 = double-bit ECC, 13/31/43 are
usually application faults). NVML delivers them as ``nvmlEventTypeXidCriticalError`` events on an
event set; :class:`XidWatcher` registers every GPU, waits with a short timeout, and counts events
by (gpu, uuid, xid). The collector only reads those counts. Unlike dcgm-exporter's "last XID"
gauge, repeated identical XIDs stay visible: a counter plus the last time each XID was seen
(alert on ``time() - ..._last_seen_timestamp_seconds < 300``; ``increase()`` misses a first event).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.runtime import Loop
from exporters.miner.nvml import NvmlSession, error_reason, text

log = logging.getLogger(__name__)

EVENT_TYPE_XID_CRITICAL_ERROR = 0x0000000000000008  # nvmlEventTypeXidCriticalError


def _handle_key(handle: Any) -> int:
    """Identity of a device handle: its address for ctypes pointers (a new object per event)."""
    try:
        return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)
    except (TypeError, ctypes.ArgumentError):
        return id(handle)


class XidWatcher:
    """Owns one NVML event set and the XID counts. ``poll_once`` is the body of a background loop.

    The set is (re)armed whenever the NVML session (re)initialises; a GPU that cannot deliver XID
    events is counted as an NVML error and skipped. Thread-safe reads via :meth:`counts`.
    """

    def __init__(
        self,
        session: NvmlSession,
        *,
        clock: Callable[[], float] = time.time,
        wait_ms: int = 500,
        idle_s: float = 1.0,
    ) -> None:
        self._session = session
        self._clock = clock
        self._wait_ms = wait_ms
        self._idle_s = idle_s
        self._idle = threading.Event()
        self._closed = False
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], tuple[int, float]] = {}
        self._set: Any = None
        self._generation = -1
        self._devices: dict[int, tuple[str, str]] = {}

    def counts(self) -> dict[tuple[str, str, str], tuple[int, float]]:
        """{(gpu, uuid, xid): (count, last_seen_unix_seconds)} since the exporter started."""
        with self._lock:
            return dict(self._counts)

    def loop(self) -> Loop:
        """A :class:`Loop` that polls back to back (each poll waits at most ``wait_ms``); its
        ``stop()`` also frees the event set once the thread has left ``nvmlEventSetWait``."""
        return _XidLoop("xid-events", 0.0, self._poll_or_idle, watcher=self)

    def close(self) -> None:
        """Stop polling: wake an idle wait; the event set is freed by the loop's thread or by
        ``stop()`` after the thread ended (NVML must not free a set another thread waits on)."""
        self._closed = True
        self._idle.set()

    def _poll_or_idle(self) -> None:
        if not self.poll_once():
            self._idle.wait(self._idle_s)

    def poll_once(self) -> bool:
        """Wait up to ``wait_ms`` for one event and record it; return False when not armed."""
        s = self._session
        if self._closed:
            self._disarm()
            return False
        if not s.ensure():
            self._disarm()
            return False
        if self._generation != s.generation:
            self._arm()
        if self._set is None:
            return False
        try:
            data = s.module.nvmlEventSetWait_v2(self._set, self._wait_ms)
        except s.error_class as exc:
            reason = error_reason(exc)
            if reason == "timeout":
                return True
            s.count(reason)
            log.debug("nvmlEventSetWait failed: %s", exc)
            if reason != "gpu_lost":  # one lost GPU does not invalidate the set; idle, then wait again
                self._disarm()  # not re-armed until NVML re-initialises
            return False
        self._record(data)
        return True

    def _record(self, data: Any) -> None:
        if not int(getattr(data, "eventType", 0)) & EVENT_TYPE_XID_CRITICAL_ERROR:
            return
        gpu, uuid = self._devices.get(_handle_key(data.device), ("", ""))
        if not gpu:
            gpu, uuid = self._identify(data.device)
        xid = str(int(data.eventData))
        now = self._clock()
        with self._lock:
            count, _ = self._counts.get((gpu, uuid, xid), (0, 0.0))
            self._counts[(gpu, uuid, xid)] = (count + 1, now)
        log.warning("XID %s on GPU %s (%s)", xid, gpu, uuid)

    def _identify(self, handle: Any) -> tuple[str, str]:
        nvml = self._session.module
        try:
            return str(int(nvml.nvmlDeviceGetIndex(handle))), text(nvml.nvmlDeviceGetUUID(handle))
        except (self._session.error_class, AttributeError):
            return "unknown", ""

    def _arm(self) -> None:
        self._disarm()
        s = self._session
        self._generation = s.generation
        nvml, err = s.module, s.error_class
        try:
            event_set = nvml.nvmlEventSetCreate()
            count = int(nvml.nvmlDeviceGetCount())
        except (err, AttributeError) as exc:
            s.count(error_reason(exc))
            log.warning("XID events unavailable: cannot create an NVML event set: %s", exc)
            return
        devices: dict[int, tuple[str, str]] = {}
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                uuid = text(nvml.nvmlDeviceGetUUID(handle))
                nvml.nvmlDeviceRegisterEvents(handle, EVENT_TYPE_XID_CRITICAL_ERROR, event_set)
            except err as exc:
                s.count(error_reason(exc))
                log.warning("XID events unavailable for GPU %d: %s", index, exc)
                continue
            devices[_handle_key(handle)] = (str(index), uuid)
        self._set, self._devices = event_set, devices
        if not devices:
            self._disarm()
        else:
            log.info("watching XID events on %d of %d GPUs", len(devices), count)

    def _disarm(self) -> None:
        event_set, self._set = self._set, None
        if event_set is None:
            return
        try:
            self._session.module.nvmlEventSetFree(event_set)
        except (self._session.error_class, AttributeError) as exc:
            log.debug("nvmlEventSetFree failed: %s", exc)


@dataclass
class _XidLoop(Loop):
    watcher: XidWatcher | None = None

    def stop(self, timeout: float = 5.0) -> None:
        if self.watcher is not None:
            self.watcher.close()
        super().stop(timeout)
        if self.watcher is not None and (self._thread is None or not self._thread.is_alive()):
            self.watcher._disarm()


class XidCollector(SubCollector):
    """XID counts gathered by :class:`XidWatcher`. E.g.::

        opencompute_gpu_xid_errors_total{gpu="0",uuid="GPU-8a1f...",xid="79"} 1.0
        opencompute_gpu_xid_last_seen_timestamp_seconds{gpu="0",uuid="GPU-8a1f...",xid="79"} 1.7e+09

    A GPU with no XID since the exporter started has no series.
    """

    name = "xid"

    def __init__(self, watcher: XidWatcher) -> None:
        self._watcher = watcher

    def collect(self) -> Iterator[Metric]:
        counts = self._watcher.counts()
        total = CounterMetricFamily(
            "opencompute_gpu_xid_errors",
            "XID errors reported by the driver since the exporter started, by XID code.",
            labels=["gpu", "uuid", "xid"],
        )
        last = GaugeMetricFamily(
            "opencompute_gpu_xid_last_seen_timestamp_seconds",
            "Unix time the XID code was last reported for the GPU.",
            labels=["gpu", "uuid", "xid"],
        )
        for (gpu, uuid, xid), (count, seen) in sorted(counts.items()):
            total.add_metric([gpu, uuid, xid], float(count))
            last.add_metric([gpu, uuid, xid], seen)
        if counts:
            yield total
            yield last
