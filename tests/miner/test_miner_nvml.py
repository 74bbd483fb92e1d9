"""GPU metrics through the NVML boundary: a documented fake NVML, and the real pynvml without a GPU."""

from __future__ import annotations

import ctypes
import logging

import psutil
import pytest
from fakes.nvml import (
    NVML_ERROR_DRIVER_NOT_LOADED,
    NVML_ERROR_GPU_IS_LOST,
    NVML_ERROR_LIBRARY_NOT_FOUND,
    FakeGpu,
    FakeNvml,
)
from miner_helpers import flag_values, two_gpus, value
from prometheus_client import generate_latest

from exporters.miner.cli import build_exporter
from exporters.miner.nvml import GpuReader, NvmlSession


def test_each_gpu_is_labelled_by_index_and_uuid_with_identity_in_info(make_exporter):
    parts = make_exporter(FakeNvml(two_gpus()))
    assert value(parts, "opencompute_gpu_nvml_up") == 1
    assert value(parts, "opencompute_gpus") == 2
    assert value(parts, "opencompute_gpu_up", gpu="1", uuid="GPU-bbbb") == 1
    info = {
        "gpu": "1",
        "uuid": "GPU-bbbb",
        "name": "NVIDIA A100-SXM4-80GB",
        "pci_bus_id": "00000000:41:00.0",
        "driver_version": "550.54.15",
        "vbios_version": "96.00.89.00.01",
    }
    assert value(parts, "opencompute_gpu_info", **info) == 1
    versions = {"driver_version": "550.54.15", "nvml_version": "12.550.54.15", "cuda_driver_version": "12.4"}
    assert value(parts, "opencompute_gpu_nvml_info", **versions) == 1


def test_nvml_units_are_converted_to_base_units(make_exporter):
    parts = make_exporter(FakeNvml([FakeGpu(uuid="GPU-a", fans_percent=(30,))]))
    g = {"gpu": "0", "uuid": "GPU-a"}
    assert value(parts, "opencompute_gpu_utilization_ratio", **g) == 0.5
    assert value(parts, "opencompute_gpu_memory_utilization_ratio", **g) == 0.25
    assert value(parts, "opencompute_gpu_memory_total_bytes", **g) == 80 * 1024**3
    assert value(parts, "opencompute_gpu_memory_used_bytes", **g) == 1024**3
    assert value(parts, "opencompute_gpu_memory_free_bytes", **g) == 79 * 1024**3
    assert value(parts, "opencompute_gpu_temperature_celsius", **g) == 40
    assert value(parts, "opencompute_gpu_power_usage_watts", **g) == pytest.approx(300.0)
    assert value(parts, "opencompute_gpu_power_limit_watts", **g) == pytest.approx(700.0)
    assert value(parts, "opencompute_gpu_energy_consumption_joules_total", **g) == pytest.approx(123456.789)
    assert value(parts, "opencompute_gpu_sm_clock_hz", **g) == 1980e6
    assert value(parts, "opencompute_gpu_memory_clock_hz", **g) == 2619e6
    assert value(parts, "opencompute_gpu_performance_state", **g) == 0
    assert value(parts, "opencompute_gpu_fan_speed_ratio", fan="0", **g) == pytest.approx(0.30)


def test_clock_event_bitmask_becomes_one_series_per_bounded_reason(make_exporter):
    parts = make_exporter(FakeNvml(two_gpus()))
    g = {"gpu": "1", "uuid": "GPU-bbbb"}
    assert value(parts, "opencompute_gpu_clock_event_reason_active", reason="sw_power_cap", **g) == 1
    assert value(parts, "opencompute_gpu_clock_event_reason_active", reason="hw_thermal_slowdown", **g) == 1
    assert value(parts, "opencompute_gpu_clock_event_reason_active", reason="gpu_idle", **g) == 0
    samples = [
        s
        for fam in parts.exporter.registry.collect()
        if fam.name == "opencompute_gpu_clock_event_reason_active"
        for s in fam.samples
        if s.labels["gpu"] == "1"
    ]
    assert len(samples) == 9


def test_ecc_and_remapped_rows_are_reported_and_unsupported_retired_pages_are_omitted(make_exporter):
    parts = make_exporter(FakeNvml(two_gpus()))
    g = {"gpu": "1", "uuid": "GPU-bbbb"}
    assert value(parts, "opencompute_gpu_ecc_errors_total", type="corrected", **g) == 3
    assert value(parts, "opencompute_gpu_ecc_errors_total", type="uncorrected", **g) == 1
    assert value(parts, "opencompute_gpu_remapped_rows", type="correctable", **g) == 2
    assert value(parts, "opencompute_gpu_remapped_rows_pending", **g) == 1
    assert value(parts, "opencompute_gpu_remapped_rows_failure", **g) == 0
    assert value(parts, "opencompute_gpu_retired_pages", cause="single_bit", **g) is None
    assert value(parts, "opencompute_gpu_retired_pages_pending", **g) is None
    # GPU 0 supports retirement: reported, even at zero
    assert value(parts, "opencompute_gpu_retired_pages", gpu="0", uuid="GPU-aaaa", cause="double_bit") == 0


def test_an_unsupported_field_is_omitted_not_zero_and_not_asked_again():
    fake = FakeNvml([FakeGpu(uuid="GPU-a", unsupported={"nvmlDeviceGetPowerUsage"})])
    reader = GpuReader(NvmlSession(fake), max_age=0)
    for _ in range(3):
        snap = reader.snapshot()
    assert snap.gpus[0].power_usage_watts is None
    assert snap.gpus[0].temperature_celsius == 40
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1
    assert reader.session.errors()["not_supported"] >= 1
    text = generate_latest_for(fake)
    assert "opencompute_gpu_power_usage_watts" not in text  # no HELP/TYPE for an empty family either


def generate_latest_for(fake):
    parts = build_exporter(flag_values("--no-collector.host"), nvml=fake, psutil=psutil)
    return generate_latest(parts.exporter.registry).decode()


def test_one_failing_gpu_does_not_hide_the_others(make_exporter):
    gpus = two_gpus()
    gpus.append(FakeGpu(uuid="GPU-cccc"))
    gpus[1].errors["nvmlDeviceGetTemperature"] = NVML_ERROR_GPU_IS_LOST  # lost mid-scrape
    parts = make_exporter(FakeNvml(gpus))
    assert value(parts, "opencompute_gpus") == 3
    assert value(parts, "opencompute_gpu_up", gpu="1", uuid="GPU-bbbb") == 0
    assert value(parts, "opencompute_gpu_utilization_ratio", gpu="1", uuid="GPU-bbbb") is None
    for gpu, uuid in (("0", "GPU-aaaa"), ("2", "GPU-cccc")):
        assert value(parts, "opencompute_gpu_up", gpu=gpu, uuid=uuid) == 1
        assert value(parts, "opencompute_gpu_temperature_celsius", gpu=gpu, uuid=uuid) == 40
    assert value(parts, "opencompute_gpu_nvml_errors_total", reason="gpu_lost") >= 1
    assert value(parts, "opencompute_scrape_collector_success", collector="nvml") == 1


def test_a_gpu_lost_before_its_uuid_is_read_keeps_the_uuid_it_had():
    gpus = [FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")]
    fake = FakeNvml(gpus)
    reader = GpuReader(NvmlSession(fake), max_age=0)
    reader.snapshot()
    gpus[1].errors["nvmlDeviceGetUUID"] = NVML_ERROR_GPU_IS_LOST
    lost = reader.snapshot().gpus[1]
    assert (lost.up, lost.uuid, lost.name) == (False, "GPU-b", "NVIDIA H100 80GB HBM3")


def test_zero_gpus_is_reported_as_a_count_of_zero(make_exporter):
    parts = make_exporter(FakeNvml([]))
    assert value(parts, "opencompute_gpu_nvml_up") == 1
    assert value(parts, "opencompute_gpus") == 0
    assert value(parts, "opencompute_miner_spec_gpus") == 0


def test_nvml_absent_keeps_serving_with_nvml_up_zero_and_no_gpu_series(make_exporter):
    parts = make_exporter(FakeNvml(two_gpus(), init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    text = generate_latest(parts.exporter.registry).decode()
    assert value(parts, "opencompute_gpu_nvml_up") == 0
    assert value(parts, "opencompute_gpu_nvml_errors_total", reason="library_not_found") == 1
    assert value(parts, "opencompute_scrape_collector_success", collector="nvml") == 1
    assert "opencompute_gpus" not in text
    assert "opencompute_gpu_up{" not in text
    assert "opencompute_miner_spec_gpus" not in text
    assert value(parts, "opencompute_miner_spec_cpu_cores") == 32  # the host part still works


def test_nvml_failure_is_logged_once_not_on_every_scrape(caplog):
    now = [0.0]
    fake = FakeNvml([], init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    reader = GpuReader(NvmlSession(fake, clock=lambda: now[0], retry_initial=10), max_age=0)
    with caplog.at_level(logging.DEBUG, logger="exporters.miner.nvml"):
        for _ in range(5):
            reader.snapshot()
            now[0] += 60
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "driver_not_loaded" in warnings[0].getMessage()


def test_nvml_init_is_retried_after_a_backoff_and_a_driver_loaded_later_is_picked_up():
    now = [0.0]
    fake = FakeNvml([FakeGpu(uuid="GPU-a")], init_error=NVML_ERROR_DRIVER_NOT_LOADED)
    reader = GpuReader(NvmlSession(fake, clock=lambda: now[0], retry_initial=10, retry_max=40), max_age=0)
    assert not reader.snapshot().up
    now[0] = 5
    reader.snapshot()
    assert fake.calls["nvmlInit"] == 1  # still inside the backoff: no retry on this scrape
    now[0] = 11
    reader.snapshot()
    assert fake.calls["nvmlInit"] == 2
    now[0] = 25  # backoff doubled to 20 s: 11 + 20 = 31
    reader.snapshot()
    assert fake.calls["nvmlInit"] == 2
    fake.init_error = None  # the driver finally loads
    now[0] = 31
    snap = reader.snapshot()
    assert snap.up and [g.uuid for g in snap.gpus] == ["GPU-a"]


def test_nvml_going_away_after_init_reports_down_then_recovers():
    fake = FakeNvml([FakeGpu(uuid="GPU-a")])
    reader = GpuReader(NvmlSession(fake), max_age=0)
    assert reader.snapshot().up
    fake.initialized = False  # e.g. the driver was unloaded under us: every call says Uninitialized
    down = reader.snapshot()
    assert (down.up, down.reason, down.gpus) == (False, "uninitialized", ())
    assert reader.snapshot().up  # re-initialised on the next scrape


def test_one_snapshot_is_shared_by_the_collectors_of_one_scrape(make_exporter):
    fake = FakeNvml(two_gpus())
    parts = make_exporter(fake)
    generate_latest(parts.exporter.registry)
    assert fake.calls["nvmlDeviceGetCount"] == 1  # nvml and host (GPU specs) collectors share it


def test_pcie_is_off_by_default_and_reported_in_bytes_per_second_when_enabled(make_exporter):
    fake = FakeNvml(two_gpus())
    parts = make_exporter(fake)
    generate_latest(parts.exporter.registry)
    assert fake.calls["nvmlDeviceGetPcieThroughput"] == 0
    parts = make_exporter(fake, "--collector.pcie")
    g = {"gpu": "0", "uuid": "GPU-aaaa"}
    assert value(parts, "opencompute_gpu_pcie_transmit_bytes_per_second", **g) == 1024 * 1024
    assert value(parts, "opencompute_gpu_pcie_receive_bytes_per_second", **g) == 2048 * 1024
    assert value(parts, "opencompute_scrape_collector_success", collector="pcie") == 1


def test_missing_pynvml_module_reports_import_error():
    session = NvmlSession(None)
    reader = GpuReader(session, max_age=0)
    for _ in range(3):
        snap = reader.snapshot()
    assert (snap.up, snap.reason) == (False, "import_error")
    assert session.errors()["import_error"] == 1  # counted once, like the log line


def _libnvidia_ml_loadable() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def test_real_pynvml_reports_what_this_machine_has(make_exporter):
    """Real nvidia-ml-py: without libnvidia-ml (this CI), NVML is down with library_not_found;
    with it, NVML is up. Either way the exporter answers."""
    import pynvml

    parts = make_exporter(pynvml)
    text = generate_latest(parts.exporter.registry).decode()
    if _libnvidia_ml_loadable():
        assert value(parts, "opencompute_gpu_nvml_up") == 1
        assert value(parts, "opencompute_gpus") >= 0
    else:
        assert value(parts, "opencompute_gpu_nvml_up") == 0
        assert value(parts, "opencompute_gpu_nvml_errors_total", reason="library_not_found") == 1
        assert "opencompute_gpu_info" not in text
    assert value(parts, "opencompute_scrape_collector_success", collector="nvml") == 1
