"""What the miner publishes to its signed run config: the original ``specs`` shape, minus speed tests.

The original ``get_perf_info(encrypted=False)`` (original-system.md section 4.2) is read by validators
and dashboards as ``gpu.details[0].name``, ``gpu.count``, ``gpu.capacity / 1024`` (GiB),
``cpu.count``, ``ram.available`` and ``hard_disk.free``. We keep exactly those keys and units (MiB for
GPU capacity, MHz for clocks, bytes elsewhere) and drop the disk/RAM ``read_speed``/``write_speed``
keys, which only a 100 MB write test could fill. A sub-part that cannot be read is ``{}``, as in the
original.
"""

from __future__ import annotations

import enum
from typing import Any, Literal

from exporters.miner.host import HostSpecs
from exporters.miner.nvml import NvmlSnapshot

MIB = 1024 * 1024


class Unknown(enum.Enum):
    """Marker type of :data:`UNKNOWN`."""

    UNKNOWN = "unknown"


UNKNOWN = Unknown.UNKNOWN  # allocation not known yet (no successful refresh): publish no ``allocated``


def _gpu_specs(snap: NvmlSnapshot | None) -> dict[str, Any]:
    if snap is None or not snap.up:
        return {}
    details = [{"name": g.name, "capacity": int((g.memory_total_bytes or 0) // MIB)} for g in snap.gpus]
    gpu: dict[str, Any] = {
        "count": len(details),
        "capacity": sum(d["capacity"] for d in details),
        "details": details,
    }
    first = snap.gpus[0] if snap.gpus else None
    if first is not None and first.sm_clock_hz is not None:
        gpu["graphics_speed"] = int(first.sm_clock_hz // 1e6)
    if first is not None and first.memory_clock_hz is not None:
        gpu["memory_speed"] = int(first.memory_clock_hz // 1e6)
    return gpu


def build_specs(host: HostSpecs, gpus: NvmlSnapshot | None) -> dict[str, Any]:
    """The ``specs`` dict a miner publishes, from one host read and one NVML snapshot."""
    cpu: dict[str, Any] = {}
    if host.cpu_cores is not None:
        cpu["count"] = host.cpu_cores
    if host.cpu_frequency_mhz is not None:
        cpu["frequency"] = float(host.cpu_frequency_mhz)
    disk: dict[str, Any] = {}
    if host.disk_total_bytes is not None:
        disk = {"total": host.disk_total_bytes, "free": host.disk_free_bytes, "used": host.disk_used_bytes}
    return {
        "cpu": cpu,
        "gpu": _gpu_specs(gpus),
        "hard_disk": disk,
        "ram": {
            "total": host.memory_total_bytes,
            "available": host.memory_available_bytes,
            "used": host.memory_used_bytes,
            "free": host.memory_free_bytes,
            "swap_total": host.swap_total_bytes,
            "swap_used": host.swap_used_bytes,
            "swap_free": host.swap_free_bytes,
        },
        "has_docker": bool(host.has_docker),
    }


def build_miner_payload(
    specs: dict[str, Any],
    allocated_validator: str | Literal[Unknown.UNKNOWN] | None,
    is_port_open: bool | None,
) -> dict[str, Any]:
    """The miner's run-config update: ``specs``, ``allocated`` (validator hotkey or None) and
    ``is_port_open``. The port key is left out until a check has run (the original made it optional),
    and ``allocated`` while it is :data:`UNKNOWN` (the outbox keeps the last published value), so a
    miner never publishes a state it has not measured."""
    payload: dict[str, Any] = {"specs": specs}
    if allocated_validator is not UNKNOWN:
        if allocated_validator is not None and not isinstance(allocated_validator, str):
            raise TypeError("allocated_validator must be an ss58 string, None or UNKNOWN")
        payload["allocated"] = allocated_validator or None
    if is_port_open is not None:
        payload["is_port_open"] = bool(is_port_open)
    return payload
