"""Helpers for the miner exporter tests: flag values, a pinned host read, scripted fake GPUs."""

from __future__ import annotations

import argparse
from typing import Any

from fakes.nvml import FakeGpu

from exporters.miner.cli import MinerParts, flags
from exporters.miner.host import HostSpecs

PINNED_HOST = HostSpecs(
    cpu_cores=32,
    cpu_frequency_mhz=2450.0,
    cpu_max_frequency_mhz=3500.0,
    memory_total_bytes=512 * 1024**3,
    memory_available_bytes=400 * 1024**3,
    memory_used_bytes=100 * 1024**3,
    memory_free_bytes=300 * 1024**3,
    swap_total_bytes=8 * 1024**3,
    swap_used_bytes=0,
    swap_free_bytes=8 * 1024**3,
    disk_total_bytes=2 * 1000**4,
    disk_free_bytes=1000**4,
    disk_used_bytes=1000**4,
    has_docker=True,
)


def flag_values(*argv: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Resolve the miner flags exactly as the CLI does (no process environment leaks in)."""
    fs = flags()
    parser = argparse.ArgumentParser()
    fs.install(parser)
    return fs.resolve(parser.parse_args(list(argv)), environ or {})


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa", pci_bus_id="00000000:01:00.0", fans_percent=(30, 45)),
        FakeGpu(
            name="NVIDIA A100-SXM4-80GB",
            uuid="GPU-bbbb",
            pci_bus_id="00000000:41:00.0",
            util_gpu=100,
            temperature=71,
            clock_reasons=0x004 | 0x040,
            ecc_corrected=3,
            ecc_uncorrected=1,
            remapped_rows=(2, 1, 1, 0),
            unsupported={"nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus"},
        ),
    ]


def value(parts: MinerParts, metric: str, /, **labels: str) -> float | None:
    """One sample from the exporter's registry (a full collect, as a scrape does)."""
    return parts.exporter.registry.get_sample_value(metric, labels)
