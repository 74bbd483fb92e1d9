"""XID errors delivered through the NVML event-set API (fake NVML), counted off the scrape path."""

from __future__ import annotations

import time

from fakes.nvml import NVML_ERROR_NOT_SUPPORTED, FakeGpu, FakeNvml
from miner_helpers import two_gpus, value
from prometheus_client import generate_latest

from exporters.miner.nvml import NvmlSession
from exporters.miner.xid import XidCollector, XidWatcher


def watcher_for(fake, now=lambda: 1_700_000_000.0, wait_ms=10):
    session = NvmlSession(fake)
    return XidWatcher(session, clock=now, wait_ms=wait_ms, idle_s=0.01), session


def test_xid_events_are_counted_by_gpu_and_code_with_the_last_seen_time():
    fake = FakeNvml(two_gpus())
    clock = [1000.0]
    watcher, _ = watcher_for(fake, now=lambda: clock[0])
    assert watcher.poll_once()  # arms the event set, then times out waiting
    fake.emit_xid(1, 79)
    fake.emit_xid(1, 79)
    fake.emit_xid(0, 13)
    for _ in range(3):
        watcher.poll_once()
        clock[0] += 5
    counts = watcher.counts()
    assert counts[("1", "GPU-bbbb", "79")] == (2, 1005.0)
    assert counts[("0", "GPU-aaaa", "13")] == (1, 1010.0)
    fams = {f.name: f for f in XidCollector(watcher).collect()}
    total = {tuple(s.labels.values()): s.value for s in fams["opencompute_gpu_xid_errors"].samples}
    assert total[("1", "GPU-bbbb", "79")] == 2


def test_every_gpu_is_registered_for_xid_critical_errors_only():
    fake = FakeNvml(two_gpus())
    watcher, _ = watcher_for(fake)
    watcher.poll_once()
    (event_set,) = fake.event_sets
    assert event_set.registered == {
        0: fake.nvmlEventTypeXidCriticalError,
        1: fake.nvmlEventTypeXidCriticalError,
    }


def test_a_gpu_that_cannot_deliver_events_is_skipped_and_counted():
    gpus = two_gpus()
    gpus[0].errors["nvmlDeviceRegisterEvents"] = NVML_ERROR_NOT_SUPPORTED
    fake = FakeNvml(gpus)
    watcher, session = watcher_for(fake)
    watcher.poll_once()
    assert list(fake.event_sets[0].registered) == [1]
    assert session.errors()["not_supported"] == 1
    fake.emit_xid(1, 48)
    watcher.poll_once()
    assert ("1", "GPU-bbbb", "48") in watcher.counts()


def test_no_gpu_supporting_events_leaves_the_watcher_idle_without_spinning():
    fake = FakeNvml([FakeGpu(uuid="GPU-a", errors={"nvmlDeviceRegisterEvents": NVML_ERROR_NOT_SUPPORTED})])
    watcher, _ = watcher_for(fake)
    assert not watcher.poll_once()
    assert not watcher.poll_once()
    assert fake.calls["nvmlEventSetCreate"] == 1  # not re-created until NVML re-initialises
    assert fake.event_sets[0].freed
    assert fake.calls["nvmlEventSetWait_v2"] == 0


def test_without_nvml_the_watcher_does_nothing_and_the_collector_is_empty():
    watcher, _ = watcher_for(FakeNvml([], init_error=12))
    assert not watcher.poll_once()
    assert list(XidCollector(watcher).collect()) == []


def test_the_background_loop_never_blocks_a_scrape(make_exporter):
    fake = FakeNvml(two_gpus())
    parts = make_exporter(fake)
    parts.watcher._wait_ms = 1000  # a long NVML wait in the background thread
    loop = parts.watcher.loop()
    loop.start()
    try:
        deadline = time.monotonic() + 2
        while not fake.event_sets and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        generate_latest(parts.exporter.registry)
        assert time.perf_counter() - start < 0.5
        fake.emit_xid(0, 31)
        deadline = time.monotonic() + 2
        while value(parts, "opencompute_gpu_xid_errors_total", gpu="0", uuid="GPU-aaaa", xid="31") is None:
            assert time.monotonic() < deadline, "XID not counted by the background loop"
            time.sleep(0.01)
        ts = value(
            parts, "opencompute_gpu_xid_last_seen_timestamp_seconds", gpu="0", uuid="GPU-aaaa", xid="31"
        )
        assert abs(ts - time.time()) < 5
    finally:
        loop.stop()
    assert fake.event_sets[0].freed  # freed once the thread has left nvmlEventSetWait


def test_the_xid_thread_restarts_after_an_unexpected_error_and_keeps_counting():
    fake = FakeNvml(two_gpus())
    watcher, _ = watcher_for(fake)
    real_wait = fake.nvmlEventSetWait_v2
    calls = [0]

    def flaky_wait(event_set, timeout_ms):
        calls[0] += 1
        if calls[0] == 2:
            raise TypeError("a driver/binding mismatch, not an NVMLError")
        return real_wait(event_set, timeout_ms)

    fake.nvmlEventSetWait_v2 = flaky_wait
    loop = watcher.loop()
    loop.min_backoff = 0.05
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while loop.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert loop.restarts == 1 and loop.alive
        fake.emit_xid(0, 79)
        while ("0", "GPU-aaaa", "79") not in watcher.counts() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert watcher.counts()[("0", "GPU-aaaa", "79")][0] == 1
        assert loop.health()["last_error"] is None  # it recovered
    finally:
        loop.stop()
