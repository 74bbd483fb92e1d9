"""GPU collectors: turn an :class:`~exporters.miner.nvml.NvmlSnapshot` into metric families.

Naming follows Prometheus base units (ratios 0..1, bytes, watts, joules, hertz), so NVML's percent,
milliwatt, millijoule and megahertz readings are converted here. Per-GPU series carry ``gpu`` (NVML
index) and ``uuid``; identity strings live only in ``opencompute_gpu_info``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.miner.nvml import (
    CLOCK_EVENT_REASONS,
    PCIE_UTIL_RX_BYTES,
    PCIE_UTIL_TX_BYTES,
    GpuReader,
    GpuSample,
)

GPU_LABELS = ["gpu", "uuid"]

# (metric name, HELP, GpuSample attribute) for the plain one-value-per-GPU gauges.
_GAUGES: tuple[tuple[str, str, str], ...] = (
    ("opencompute_gpu_utilization_ratio", "Fraction of the last sample period a kernel ran (0..1).",
     "utilization_ratio"),
    ("opencompute_gpu_memory_utilization_ratio",
     "Fraction of the last sample period device memory was read or written (0..1).",
     "memory_utilization_ratio"),
    ("opencompute_gpu_memory_total_bytes", "Total framebuffer memory.", "memory_total_bytes"),
    ("opencompute_gpu_memory_used_bytes", "Framebuffer memory in use.", "memory_used_bytes"),
    ("opencompute_gpu_memory_free_bytes", "Framebuffer memory free.", "memory_free_bytes"),
    ("opencompute_gpu_temperature_celsius", "GPU core temperature.", "temperature_celsius"),
    ("opencompute_gpu_power_usage_watts", "Current board power draw.", "power_usage_watts"),
    ("opencompute_gpu_power_limit_watts", "Enforced power limit.", "power_limit_watts"),
    ("opencompute_gpu_sm_clock_hz", "Current SM clock.", "sm_clock_hz"),
    ("opencompute_gpu_memory_clock_hz", "Current memory clock.", "memory_clock_hz"),
    ("opencompute_gpu_performance_state", "Performance state (P-state); 0 is maximum performance.",
     "performance_state"),
)  # fmt: skip


def _labels(g: GpuSample) -> list[str]:
    return [str(g.index), g.uuid]


class NvmlCollector(SubCollector):
    """GPU health and utilisation from NVML, one snapshot per scrape. E.g.::

        opencompute_gpu_nvml_up 1.0
        opencompute_gpus 2.0
        opencompute_gpu_up{gpu="0",uuid="GPU-8a1f..."} 1.0
        opencompute_gpu_info{gpu="0",uuid="GPU-8a1f...",name="NVIDIA H100 80GB HBM3",...} 1.0
        opencompute_gpu_temperature_celsius{gpu="0",uuid="GPU-8a1f..."} 41.0

    With NVML down only ``opencompute_gpu_nvml_up 0`` and the error counters remain: GPU series
    disappear rather than going stale.
    """

    name = "nvml"

    def __init__(self, reader: GpuReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        snap = self._reader.snapshot()
        yield GaugeMetricFamily(
            "opencompute_gpu_nvml_up",
            "Whether NVML is initialised and answering (1) or not (0; see the log for why).",
            value=1.0 if snap.up else 0.0,
        )
        if snap.up:
            info = GaugeMetricFamily(
                "opencompute_gpu_nvml_info",
                "NVIDIA driver, NVML and CUDA driver versions.",
                labels=["driver_version", "nvml_version", "cuda_driver_version"],
            )
            info.add_metric([snap.driver_version, snap.nvml_version, snap.cuda_driver_version], 1.0)
            yield info
            yield GaugeMetricFamily(
                "opencompute_gpus", "Number of GPUs visible to NVML.", value=float(len(snap.gpus))
            )
            yield from self._per_gpu(snap.gpus, snap.driver_version)
        errors = CounterMetricFamily(
            "opencompute_gpu_nvml_errors",
            "NVML calls that failed, by bounded reason (not_supported is counted once per GPU and field).",
            labels=["reason"],
        )
        for reason, count in self._reader.session.errors().items():
            errors.add_metric([reason], float(count))
        yield errors

    def _per_gpu(self, gpus: tuple[GpuSample, ...], driver: str) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "opencompute_gpu_up",
            "Whether the GPU answered NVML during this scrape (0 = lost, fell off the bus, needs reset).",
            labels=GPU_LABELS,
        )
        info = GaugeMetricFamily(
            "opencompute_gpu_info",
            "GPU identity.",
            labels=["gpu", "uuid", "name", "pci_bus_id", "driver_version", "vbios_version"],
        )
        for g in gpus:
            up.add_metric(_labels(g), 1.0 if g.up else 0.0)
            if g.uuid:
                info.add_metric([str(g.index), g.uuid, g.name, g.pci_bus_id, driver, g.vbios_version], 1.0)
        yield up
        yield info
        live = [g for g in gpus if g.up]
        for name, text, attr in _GAUGES:
            yield from _non_empty(_gauge(name, text, live, attr))
        energy = CounterMetricFamily(
            "opencompute_gpu_energy_consumption_joules",
            "Energy consumed since the driver was last loaded.",
            labels=GPU_LABELS,
        )
        for g in live:
            if g.energy_joules is not None:
                energy.add_metric(_labels(g), g.energy_joules)
        yield from _non_empty(energy)
        yield from _non_empty(_fans(live))
        yield from _non_empty(_clock_events(live))
        yield from _non_empty(_ecc(live))
        yield from _retired_pages(live)
        yield from _remapped_rows(live)


def _non_empty(fam: Metric) -> Iterator[Metric]:
    """Skip families with no samples (every GPU lacks the field): no dangling HELP/TYPE lines."""
    if fam.samples:
        yield fam


def _gauge(name: str, text: str, gpus: list[GpuSample], attr: str) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(name, text, labels=GPU_LABELS)
    for g in gpus:
        value: Any = getattr(g, attr)
        if value is not None:
            fam.add_metric(_labels(g), float(value))
    return fam


def _fans(gpus: list[GpuSample]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(
        "opencompute_gpu_fan_speed_ratio",
        "Intended fan speed as a fraction of maximum (may exceed 1 when a fan is obstructed).",
        labels=[*GPU_LABELS, "fan"],
    )
    for g in gpus:
        for fan, ratio in g.fan_speed_ratios:
            fam.add_metric([*_labels(g), str(fan)], ratio)
    return fam


def _clock_events(gpus: list[GpuSample]) -> GaugeMetricFamily:
    fam = GaugeMetricFamily(
        "opencompute_gpu_clock_event_reason_active",
        "Whether a clock-event (throttle) reason is currently lowering the clocks (1) or not (0).",
        labels=[*GPU_LABELS, "reason"],
    )
    for g in gpus:
        if g.clock_event_reasons is None:
            continue
        for reason, bit in CLOCK_EVENT_REASONS:
            fam.add_metric([*_labels(g), reason], 1.0 if g.clock_event_reasons & bit else 0.0)
    return fam


def _ecc(gpus: list[GpuSample]) -> CounterMetricFamily:
    fam = CounterMetricFamily(
        "opencompute_gpu_ecc_errors",
        "ECC memory errors since the driver was last loaded (volatile counters).",
        labels=[*GPU_LABELS, "type"],
    )
    for g in gpus:
        for kind, value in (("corrected", g.ecc_corrected), ("uncorrected", g.ecc_uncorrected)):
            if value is not None:
                fam.add_metric([*_labels(g), kind], value)
    return fam


def _retired_pages(gpus: list[GpuSample]) -> Iterator[Metric]:
    pages = GaugeMetricFamily(
        "opencompute_gpu_retired_pages",
        "Memory pages retired by cause (pre-Ampere; Ampere and later remap rows instead).",
        labels=[*GPU_LABELS, "cause"],
    )
    pending = GaugeMetricFamily(
        "opencompute_gpu_retired_pages_pending",
        "Whether a page retirement waits for the next driver reload (1) or not (0).",
        labels=GPU_LABELS,
    )
    for g in gpus:
        for cause, value in (
            ("single_bit", g.retired_pages_single_bit),
            ("double_bit", g.retired_pages_double_bit),
        ):
            if value is not None:
                pages.add_metric([*_labels(g), cause], float(value))
        if g.retired_pages_pending is not None:
            pending.add_metric(_labels(g), 1.0 if g.retired_pages_pending else 0.0)
    yield from _non_empty(pages)
    yield from _non_empty(pending)


def _remapped_rows(gpus: list[GpuSample]) -> Iterator[Metric]:
    rows = GaugeMetricFamily(
        "opencompute_gpu_remapped_rows",
        "Memory rows remapped by error type (Ampere and later).",
        labels=[*GPU_LABELS, "type"],
    )
    pending = GaugeMetricFamily(
        "opencompute_gpu_remapped_rows_pending",
        "Whether a row remap waits for the next GPU reset (1) or not (0).",
        labels=GPU_LABELS,
    )
    failure = GaugeMetricFamily(
        "opencompute_gpu_remapped_rows_failure",
        "Whether a row remap has failed (1; the GPU needs service) or not (0).",
        labels=GPU_LABELS,
    )
    for g in gpus:
        if g.remapped_rows_correctable is None:
            continue
        rows.add_metric([*_labels(g), "correctable"], float(g.remapped_rows_correctable))
        rows.add_metric([*_labels(g), "uncorrectable"], float(g.remapped_rows_uncorrectable or 0))
        pending.add_metric(_labels(g), 1.0 if g.remapped_rows_pending else 0.0)
        failure.add_metric(_labels(g), 1.0 if g.remapped_rows_failure else 0.0)
    yield from _non_empty(rows)
    yield from _non_empty(pending)
    yield from _non_empty(failure)


class PcieCollector(SubCollector):
    """PCIe throughput per GPU (opt-in: NVML samples each counter over ~20 ms, per GPU). E.g.::

        opencompute_gpu_pcie_transmit_bytes_per_second{gpu="0",uuid="GPU-8a1f..."} 1.048576e+06

    NVML reports KB/s; exported as bytes/s (x1024).
    """

    name = "pcie"

    def __init__(self, reader: GpuReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        snap = self._reader.snapshot()
        if not snap.up:
            return
        tx = GaugeMetricFamily(
            "opencompute_gpu_pcie_transmit_bytes_per_second",
            "PCIe transmit throughput over NVML's ~20 ms sample window.",
            labels=GPU_LABELS,
        )
        rx = GaugeMetricFamily(
            "opencompute_gpu_pcie_receive_bytes_per_second",
            "PCIe receive throughput over NVML's ~20 ms sample window.",
            labels=GPU_LABELS,
        )
        for g in snap.gpus:
            for fam, key, counter in (
                (tx, "pcie_tx", PCIE_UTIL_TX_BYTES),
                (rx, "pcie_rx", PCIE_UTIL_RX_BYTES),
            ):
                kbps = self._reader.call(g, key, "nvmlDeviceGetPcieThroughput", counter)
                if kbps is not None:
                    fam.add_metric(_labels(g), float(kbps) * 1024.0)
        yield from _non_empty(tx)
        yield from _non_empty(rx)
