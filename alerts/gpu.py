"""Alerts about GPUs on miner hosts (NVML, XID, ECC, thermals, power), from the miner exporter."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert
from exporters import dashboard_uids as uids

STEM = "gpu"
_GPU = "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }}"


def alerts() -> list[Alert]:
    """The GPU alerts, built from the current thresholds."""
    critical_xids = t.regex_of(t.CRITICAL_XIDS)
    thermal = t.regex_of(t.THERMAL_THROTTLE_REASONS)
    power = t.regex_of(t.POWER_THROTTLE_REASONS)
    return [
        Alert(
            name="OpenComputeNVMLDown",
            expr="opencompute_gpu_nvml_up == 0",
            for_=t.NVML_DOWN_FOR,
            severity="critical",
            summary="The miner exporter cannot talk to the NVIDIA driver.",
            description=(
                "NVML on {{ $labels.instance }} has not initialised for "
                f"{t.NVML_DOWN_FOR}: the driver is missing, not loaded or mismatched, so no GPU is "
                "monitored and validators' proof-of-GPU will fail too."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPULost",
            expr="opencompute_gpu_up == 0",
            for_=t.GPU_LOST_FOR,
            severity="critical",
            summary="A GPU stopped answering NVML (fell off the bus).",
            description=(
                f"{_GPU} has not answered NVML for {t.GPU_LOST_FOR}; the driver usually logs "
                "XID 79. The GPU is unusable until the host is reset."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUCountDropped",
            expr=(
                f"opencompute_gpus < max_over_time(opencompute_gpus[{t.GPU_COUNT_LOOKBACK}])\n"
                "and on (job, instance)\n"
                "opencompute_gpu_nvml_up == 1"
            ),
            for_=t.GPU_COUNT_DROPPED_FOR,
            severity="warning",
            summary="Fewer GPUs are visible than earlier.",
            description=(
                "{{ $labels.instance }} now sees {{ $value }} GPUs, fewer than at some point in the last "
                f"{t.GPU_COUNT_LOOKBACK}: a GPU disappeared from NVML entirely (missing from the bus "
                "after a reset or driver reload)."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUCriticalXid",
            expr=(
                "(\n"
                f'  time() - opencompute_gpu_xid_last_seen_timestamp_seconds{{xid=~"{critical_xids}"}}\n'
                f"  < {t.XID_RECENT_SECONDS}\n"
                ")\n"
                "or\n"
                f'increase(opencompute_gpu_xid_errors_total{{xid=~"{critical_xids}"}}[{t.XID_WINDOW}]) > 0'
            ),
            severity="critical",
            summary="A GPU reported a critical XID error.",
            description=(
                f"{_GPU} reported XID {{{{ $labels.xid }}}} in the last {t.XID_WINDOW}. "
                "This XID means failing memory, a lost GPU or a broken NVLink; expect jobs and "
                "proof-of-GPU on it to fail."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUXidError",
            expr=(
                "(\n"
                f'  time() - opencompute_gpu_xid_last_seen_timestamp_seconds{{xid!~"{critical_xids}"}}\n'
                f"  < {t.XID_RECENT_SECONDS}\n"
                ")\n"
                "or\n"
                f'increase(opencompute_gpu_xid_errors_total{{xid!~"{critical_xids}"}}[{t.XID_WINDOW}]) > 0'
            ),
            severity="info",
            summary="A GPU reported an XID error.",
            description=(
                f"{_GPU} reported XID {{{{ $labels.xid }}}} in the last {t.XID_WINDOW}. Most such XIDs "
                "come from the workload (a renter's CUDA fault); repeated ones are worth a look."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUUncorrectableECC",
            expr=f'increase(opencompute_gpu_ecc_errors_total{{type="uncorrected"}}[{t.ECC_WINDOW}]) > 0',
            severity="critical",
            summary="A GPU had uncorrectable ECC memory errors.",
            description=(
                f"{_GPU} counted {{{{ $value | humanize }}}} uncorrectable ECC errors in the last "
                f"{t.ECC_WINDOW}. Work on it may have produced wrong results; it needs a reset and, "
                "if errors recur, an RMA."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPURowRemapFailure",
            expr="opencompute_gpu_remapped_rows_failure == 1",
            for_=t.ROW_REMAP_FAILURE_FOR,
            severity="critical",
            summary="A GPU failed to remap a bad memory row.",
            description=(
                f"{_GPU} reports a row-remapping failure: it has run out of spare memory rows and "
                "will keep producing memory errors. Take it out of service and RMA it."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUResetRequired",
            expr=(
                "max by (job, instance, gpu, uuid) (\n"
                "  opencompute_gpu_remapped_rows_pending == 1\n"
                "  or\n"
                "  opencompute_gpu_retired_pages_pending == 1\n"
                ")"
            ),
            for_=t.GPU_RESET_REQUIRED_FOR,
            severity="warning",
            summary="A GPU needs a reset to retire bad memory.",
            description=(
                f"{_GPU} has a pending row remap or page retirement that only takes effect after a "
                "GPU reset or reboot; until then the bad memory can still be used."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUTemperatureHigh",
            expr=f"opencompute_gpu_temperature_celsius > {t.GPU_TEMPERATURE_CELSIUS}",
            for_=t.GPU_TEMPERATURE_FOR,
            severity="warning",
            summary="A GPU is running hot.",
            description=(
                f"{_GPU} has been above {t.GPU_TEMPERATURE_CELSIUS} °C for {t.GPU_TEMPERATURE_FOR} "
                "(now {{ $value }} °C); it will throttle and benchmark slower."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUThermalThrottling",
            expr=f'opencompute_gpu_clock_event_reason_active{{reason=~"{thermal}"}} == 1',
            for_=t.THROTTLE_FOR,
            severity="warning",
            summary="A GPU is throttling its clocks because it is too hot.",
            description=(
                f"{_GPU} has held clocks down for {t.THROTTLE_FOR} ({{{{ $labels.reason }}}}). Check "
                "cooling and airflow; proof-of-GPU benchmarks and renters' jobs run slower meanwhile."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUPowerThrottling",
            expr=f'opencompute_gpu_clock_event_reason_active{{reason=~"{power}"}} == 1',
            for_=t.THROTTLE_FOR,
            severity="warning",
            summary="A GPU is slowed down by its power supply.",
            description=(
                f"{_GPU} has been in {{{{ $labels.reason }}}} for {t.THROTTLE_FOR}: the hardware or "
                "the power brake signal (PSU, cabling) is cutting its clocks. This is not the normal "
                "power cap."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
    ]
