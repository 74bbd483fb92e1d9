"""Host specs a miner advertises (the original ``get_perf_info`` shape), from cheap reads only.

The original miner wrote a 100 MB file, allocated 200 MB of RAM and ran a docker container every
30 minutes to advertise "speeds". None of that here: psutil counters, one ``statvfs`` of the disk
path, and whether a docker socket or binary exists (docker is never run). GPU specs come from the
same NVML snapshot as the GPU collector.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.miner.nvml import GpuReader, NvmlSnapshot

log = logging.getLogger(__name__)

DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


@dataclass(frozen=True)
class HostSpecs:
    """One cheap read of the host. ``None`` = not available on this host (e.g. no cpufreq in a VM)."""

    cpu_cores: int | None
    cpu_frequency_mhz: float | None
    cpu_max_frequency_mhz: float | None
    memory_total_bytes: int
    memory_available_bytes: int
    memory_used_bytes: int
    memory_free_bytes: int
    swap_total_bytes: int
    swap_used_bytes: int
    swap_free_bytes: int
    disk_total_bytes: int | None
    disk_free_bytes: int | None
    disk_used_bytes: int | None
    has_docker: bool


def docker_available(
    which: Callable[[str], str | None] = shutil.which,
    exists: Callable[[str], bool] = os.path.exists,
) -> bool:
    """Docker is "available" when its socket exists or the CLI is on PATH; docker is never run."""
    return any(exists(p) for p in DOCKER_SOCKETS) or which("docker") is not None


def _positive(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def read_host(
    psutil: Any, disk_path: str = "/", has_docker: Callable[[], bool] = docker_available
) -> HostSpecs:
    """Read :class:`HostSpecs` with the given psutil module (injected so tests can pin values)."""
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, AttributeError):
        freq = None
    vm, swap = psutil.virtual_memory(), psutil.swap_memory()
    try:
        disk = psutil.disk_usage(disk_path)
        disk_total, disk_free, disk_used = int(disk.total), int(disk.free), int(disk.used)
    except OSError as exc:
        log.warning("cannot stat --host.disk-path %s: %s", disk_path, exc.strerror or exc)
        disk_total = disk_free = disk_used = None
    cores = psutil.cpu_count(logical=False)
    return HostSpecs(
        cpu_cores=int(cores) if cores else None,
        cpu_frequency_mhz=_positive(getattr(freq, "current", None)),
        cpu_max_frequency_mhz=_positive(getattr(freq, "max", None)),
        memory_total_bytes=int(vm.total),
        memory_available_bytes=int(vm.available),
        memory_used_bytes=int(vm.used),
        memory_free_bytes=int(vm.free),
        swap_total_bytes=int(swap.total),
        swap_used_bytes=int(swap.used),
        swap_free_bytes=int(swap.free),
        disk_total_bytes=disk_total,
        disk_free_bytes=disk_free,
        disk_used_bytes=disk_used,
        has_docker=has_docker(),
    )


def gpu_models(snap: NvmlSnapshot) -> dict[str, int]:
    """{model name: count} of the GPUs NVML sees (lost GPUs count by their remembered name)."""
    models: dict[str, int] = {}
    for g in snap.gpus:
        name = g.name or "unknown"
        models[name] = models.get(name, 0) + 1
    return models


class HostCollector(SubCollector):
    """What this miner advertises, as metrics. E.g.::

        opencompute_miner_spec_cpu_cores 32.0
        opencompute_miner_spec_memory_bytes 5.4e+11
        opencompute_miner_spec_gpus 8.0
        opencompute_miner_spec_model_gpus{name="NVIDIA H100 80GB HBM3"} 8.0

    GPU specs are omitted while NVML is down (the original advertised an empty ``gpu`` then).
    """

    name = "host"

    def __init__(self, read: Callable[[], HostSpecs], gpus: GpuReader | None = None) -> None:
        self._read = read
        self._gpus = gpus

    def collect(self) -> Iterator[Metric]:
        h = self._read()
        plain = (
            ("opencompute_miner_spec_cpu_cores", "Physical CPU cores.", h.cpu_cores),
            (
                "opencompute_miner_spec_cpu_frequency_hz",
                "Current CPU frequency (what the original specs advertise as cpu.frequency).",
                h.cpu_frequency_mhz * 1e6 if h.cpu_frequency_mhz else None,
            ),
            (
                "opencompute_miner_spec_cpu_max_frequency_hz",
                "Maximum CPU frequency.",
                h.cpu_max_frequency_mhz * 1e6 if h.cpu_max_frequency_mhz else None,
            ),
            ("opencompute_miner_spec_memory_bytes", "Total RAM.", h.memory_total_bytes),
            ("opencompute_miner_spec_swap_bytes", "Total swap.", h.swap_total_bytes),
            (
                "opencompute_miner_spec_disk_total_bytes",
                "Size of the --host.disk-path filesystem.",
                h.disk_total_bytes,
            ),
            (
                "opencompute_miner_spec_disk_free_bytes",
                "Free space on the --host.disk-path filesystem.",
                h.disk_free_bytes,
            ),
            (
                "opencompute_miner_spec_docker_available",
                "Whether a docker socket or CLI is present (1) or not (0); docker is not run.",
                1 if h.has_docker else 0,
            ),
        )
        for name, text, value in plain:
            if value is not None:
                yield GaugeMetricFamily(name, text, value=float(value))
        if self._gpus is None:
            return
        snap = self._gpus.snapshot()
        if not snap.up:
            return
        yield GaugeMetricFamily(
            "opencompute_miner_spec_gpus", "GPUs advertised.", value=float(len(snap.gpus))
        )
        yield GaugeMetricFamily(
            "opencompute_miner_spec_gpu_memory_bytes",
            "Total GPU memory advertised (sum over GPUs).",
            value=sum(g.memory_total_bytes or 0.0 for g in snap.gpus),
        )
        models = GaugeMetricFamily(
            "opencompute_miner_spec_model_gpus",
            "GPU models advertised; the value is how many GPUs of that model.",
            labels=["name"],
        )
        for name, count in sorted(gpu_models(snap).items()):
            models.add_metric([name], float(count))
        yield models
