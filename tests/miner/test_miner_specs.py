"""Host specs (real psutil, cheap reads) and the published specs/payload in the original shape."""

from __future__ import annotations

import psutil
import pytest
from fakes.nvml import FakeGpu, FakeNvml
from miner_helpers import PINNED_HOST, value

from exporters.miner.host import docker_available, read_host
from exporters.miner.nvml import GpuReader, NvmlSession, NvmlSnapshot
from exporters.miner.specs import build_miner_payload, build_specs


def snapshot(gpus):
    return GpuReader(NvmlSession(FakeNvml(gpus))).snapshot()


def test_host_read_uses_cheap_psutil_values_of_this_machine(tmp_path):
    h = read_host(psutil, str(tmp_path))
    assert h.cpu_cores == psutil.cpu_count(logical=False)
    assert h.memory_total_bytes == psutil.virtual_memory().total
    assert h.disk_total_bytes == psutil.disk_usage(str(tmp_path)).total
    assert h.disk_free_bytes is not None and 0 < h.disk_free_bytes <= h.disk_total_bytes


def test_an_unreadable_disk_path_drops_only_the_disk_specs(tmp_path, caplog):
    h = read_host(psutil, str(tmp_path / "missing"))
    assert h.disk_total_bytes is None and h.disk_free_bytes is None
    assert h.memory_total_bytes > 0
    assert "disk-path" in caplog.text


def test_docker_is_detected_from_socket_or_binary_without_running_it():
    assert docker_available(which=lambda _: None, exists=lambda p: p == "/var/run/docker.sock")
    assert docker_available(which=lambda _: "/usr/bin/docker", exists=lambda _: False)
    assert not docker_available(which=lambda _: None, exists=lambda _: False)


def test_specs_have_the_original_shape_without_speed_tests():
    gpus = [
        FakeGpu(uuid="GPU-a", memory_total=80 * 1024**3),
        FakeGpu(uuid="GPU-b", memory_total=80 * 1024**3),
    ]
    specs = build_specs(PINNED_HOST, snapshot(gpus))
    assert specs["cpu"] == {"count": 32, "frequency": 2450.0}
    assert specs["gpu"] == {
        "count": 2,
        "capacity": 2 * 81920,
        "details": [{"name": "NVIDIA H100 80GB HBM3", "capacity": 81920}] * 2,
        "graphics_speed": 1980,
        "memory_speed": 2619,
    }
    assert specs["hard_disk"] == {"total": 2 * 1000**4, "free": 1000**4, "used": 1000**4}
    assert set(specs["ram"]) == {"total", "available", "used", "free", "swap_total", "swap_used", "swap_free"}
    assert specs["ram"]["available"] == 400 * 1024**3
    assert specs["has_docker"] is True
    flat = repr(specs)
    assert "read_speed" not in flat and "write_speed" not in flat


def test_gpu_specs_are_empty_when_nvml_is_down_and_have_no_speeds_without_gpus():
    assert build_specs(PINNED_HOST, NvmlSnapshot(up=False, reason="library_not_found"))["gpu"] == {}
    assert build_specs(PINNED_HOST, None)["gpu"] == {}
    assert build_specs(PINNED_HOST, snapshot([]))["gpu"] == {"count": 0, "capacity": 0, "details": []}


def test_miner_payload_carries_specs_allocation_and_a_measured_port_state():
    specs = {"cpu": {"count": 1}}
    assert build_miner_payload(specs, "5Gvalidator", True) == {
        "specs": specs,
        "allocated": "5Gvalidator",
        "is_port_open": True,
    }
    assert build_miner_payload(specs, None, False) == {
        "specs": specs,
        "allocated": None,
        "is_port_open": False,
    }
    assert build_miner_payload(specs, None, None) == {"specs": specs, "allocated": None}
    with pytest.raises(TypeError):
        build_miner_payload(specs, 42, None)  # type: ignore[arg-type]


def test_host_collector_exports_specs_and_gpu_models_from_the_nvml_snapshot(make_exporter):
    gpus = [FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b"), FakeGpu(uuid="GPU-c", name="NVIDIA A100-SXM4-80GB")]
    parts = make_exporter(FakeNvml(gpus))
    assert value(parts, "opencompute_miner_spec_cpu_cores") == 32
    assert value(parts, "opencompute_miner_spec_cpu_frequency_hz") == 2450e6
    assert value(parts, "opencompute_miner_spec_memory_bytes") == 512 * 1024**3
    assert value(parts, "opencompute_miner_spec_docker_available") == 1
    assert value(parts, "opencompute_miner_spec_gpus") == 3
    assert value(parts, "opencompute_miner_spec_gpu_memory_bytes") == 3 * 80 * 1024**3
    assert value(parts, "opencompute_miner_spec_model_gpus", name="NVIDIA H100 80GB HBM3") == 2
    assert value(parts, "opencompute_miner_spec_model_gpus", name="NVIDIA A100-SXM4-80GB") == 1
