"""Miner GPUs: per host and GPU, what NVML says, and whether the miner is allocated and reachable.

For the miner operator: the first row answers "is anything wrong right now", the rest is the
dcgm-exporter-style detail per GPU (utilisation, memory, thermals, power, throttling, XID/ECC)
the workloads on each GPU (rental, SN27 checks, other containers, host) and the miner's own
state (allocation, port check).
"""

from __future__ import annotations

from grafanalib import core

from alerts import thresholds
from dashboards import house_style as hs
from dashboards import queries as q
from exporters import dashboard_uids as uids

UID = uids.MINER_GPUS
_GPU_LEGEND = "{{instance}} GPU {{gpu}}"


def _overview() -> hs.Row:
    return hs.Row(
        "Overview",
        [
            hs.stat(
                "GPUs visible",
                "short",
                [hs.target(q.MINER_GPU_COUNT)],
                description="GPUs NVML reports on the selected hosts (opencompute_gpus).",
            ),
            hs.stat(
                "GPUs lost",
                "short",
                [hs.target(q.MINER_GPUS_LOST)],
                description="GPUs that stopped answering NVML (lost / fell off the bus). Should be 0.",
                thresholds=hs.steps(("green", None), ("red", 1)),
            ),
            hs.stat(
                "NVML",
                "none",
                [hs.target(q.MINER_NVML_UP)],
                description="Whether the exporter can talk to the NVIDIA driver on every selected host.",
                mappings=hs.UP_DOWN,
            ),
            hs.stat(
                "Allocated",
                "none",
                [hs.target(q.MINER_ALLOCATED_NOW)],
                description="Whether any selected miner is currently allocated to a renter.",
                mappings=hs.YES_NO,
            ),
            hs.stat(
                "Miner port",
                "none",
                [hs.target(q.MINER_PORT_OPEN_NOW)],
                description="Result of the exporter's last check of the miner's public port "
                "(Closed if any selected host failed it). Validators cannot reach a closed port.",
                mappings=hs.OPEN_CLOSED,
            ),
            hs.stat(
                "Power draw",
                "watt",
                [hs.target(q.MINER_POWER_TOTAL)],
                description="Total GPU board power draw on the selected hosts.",
            ),
        ],
        height=4,
    )


def _utilization() -> hs.Row:
    return hs.Row(
        "Utilization",
        [
            hs.timeseries(
                "GPU utilization",
                "percentunit",
                [hs.target(q.GPU_UTILIZATION, _GPU_LEGEND)],
                description="Share of time a kernel was running on the GPU (NVML utilization.gpu).",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Memory controller utilization",
                "percentunit",
                [hs.target(q.GPU_MEMORY_UTILIZATION, _GPU_LEGEND)],
                description="Share of time device memory was being read or written (NVML "
                "utilization.memory).",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Framebuffer memory used",
                "bytes",
                [
                    hs.target(q.GPU_MEMORY_USED, _GPU_LEGEND + " used"),
                    hs.target(q.GPU_MEMORY_TOTAL, _GPU_LEGEND + " total"),
                ],
                description="Device memory in use against the total per GPU.",
                min_value=0,
            ),
        ],
    )


def _workloads() -> hs.Row:
    legend = _GPU_LEGEND + " {{workload}}"
    return hs.Row(
        "Workloads on the GPUs",
        [
            hs.stat(
                "GPUs with the rental",
                "short",
                [hs.target(q.MINER_RENTAL_GPUS_NOW)],
                description="GPUs running at least one process of the renter's container (ssh-container).",
            ),
            hs.stat(
                "GPUs with foreign work",
                "short",
                [hs.target(q.MINER_FOREIGN_GPUS_NOW)],
                description="GPUs running processes that are neither the rental nor the SN27 checks (another "
                "container, a host process, or unattributed). On an unallocated miner these hurt "
                "proof-of-GPU.",
                thresholds=hs.steps(("green", None), ("orange", 1)),
            ),
            hs.timeseries(
                "Processes by workload",
                "short",
                [hs.target(q.GPU_PROCESSES_BY_WORKLOAD, legend)],
                description="GPU processes per GPU by workload: rental (ssh-container), check (ssh-test-"
                "container, sn27-check-container), other_container, host, unknown (could not be "
                "attributed).",
                min_value=0,
                stack=True,
            ),
            hs.timeseries(
                "GPU memory by workload",
                "bytes",
                [hs.target(q.GPU_PROCESS_MEMORY_BY_WORKLOAD, legend)],
                description="GPU memory the processes of each workload use (absent where NVML cannot tell per"
                " process, e.g. MIG).",
                min_value=0,
                stack=True,
            ),
            hs.timeseries(
                "SM utilization by workload",
                "percentunit",
                [hs.target(q.GPU_PROCESS_UTILIZATION_BY_WORKLOAD, legend)],
                description="Per-process SM utilisation summed by workload (NVML per-process samples; absent "
                "in MIG mode). A rented GPU with no rental utilisation for hours is idle or "
                "broken.",
                min_value=0,
                max_value=1,
            ),
            hs.state_timeline(
                "Attribution problems",
                "none",
                [
                    hs.target(q.MINER_ATTRIBUTION_PROBLEMS, "{{instance}} {{reason}}"),
                    hs.target(q.MINER_DOCKER_UP, "{{instance}} docker readable"),
                ],
                description="Reasons GPU processes could not be attributed (no Docker socket or permission, "
                "/proc not readable or another pid namespace, NVML without process lists, MIG), "
                "and whether the Docker Engine API answered.",
                mappings=hs.YES_NO,
            ),
        ],
        widths=(3, 3, 5, 5, 4, 4),
    )


def _thermals() -> hs.Row:
    return hs.Row(
        "Thermals, power and clocks",
        [
            hs.timeseries(
                "Temperature",
                "celsius",
                [hs.target(q.GPU_TEMPERATURE, _GPU_LEGEND)],
                description="GPU core temperature. The dashed line is where the temperature alert starts.",
                thresholds=hs.steps(("green", None), ("red", thresholds.GPU_TEMPERATURE_CELSIUS)),
            ),
            hs.timeseries(
                "Power usage and limit",
                "watt",
                [
                    hs.target(q.GPU_POWER_USAGE, _GPU_LEGEND + " usage"),
                    hs.target(q.GPU_POWER_LIMIT, _GPU_LEGEND + " limit"),
                ],
                description="Board power draw against the enforced power limit per GPU.",
                min_value=0,
            ),
            hs.timeseries(
                "Energy use (average power)",
                "watt",
                [hs.target(q.GPU_ENERGY_RATE, _GPU_LEGEND)],
                description="Rate of the energy counter: average power over the rate interval, "
                "smoother than the instantaneous reading.",
                min_value=0,
            ),
            hs.timeseries(
                "Clocks",
                "hertz",
                [
                    hs.target(q.GPU_SM_CLOCK, _GPU_LEGEND + " SM"),
                    hs.target(q.GPU_MEMORY_CLOCK, _GPU_LEGEND + " memory"),
                ],
                description="Current SM and memory clocks; a drop under load points to throttling.",
                min_value=0,
            ),
        ],
    )


def _throttling() -> hs.Row:
    return hs.Row(
        "Throttling",
        [
            hs.state_timeline(
                "Clock event reasons (throttling)",
                "none",
                [hs.target(q.GPU_CLOCK_EVENT_REASONS, _GPU_LEGEND + " {{reason}}")],
                description="Why clocks are held below maximum (NVML clocks event reasons), idle and "
                "application-clock bookkeeping excluded. Thermal and hardware slowdowns are alerted on.",
                mappings=hs.ACTIVE,
            ),
            hs.timeseries(
                "Performance state",
                "none",
                [hs.target(q.GPU_PERFORMANCE_STATE, _GPU_LEGEND)],
                description="NVML P-state: 0 is maximum performance, higher numbers are lower power states.",
                min_value=0,
            ),
            hs.timeseries(
                "Fan speed",
                "percentunit",
                [hs.target(q.GPU_FAN_SPEED, _GPU_LEGEND + " fan {{fan}}")],
                description="Fan speed as a share of maximum, per fan (absent on passively cooled GPUs).",
                min_value=0,
                max_value=1,
            ),
        ],
        widths=(12, 6, 6),
    )


def _errors() -> hs.Row:
    return hs.Row(
        "Errors and memory health",
        [
            hs.state_timeline(
                "GPU answering NVML",
                "none",
                [hs.target(q.GPU_UP, _GPU_LEGEND)],
                description="Down means NVML lost the GPU (it fell off the bus or the driver gave up on it).",
            ),
            hs.timeseries(
                "XID errors",
                "short",
                [hs.target(q.GPU_XID_INCREASE, _GPU_LEGEND + " XID {{xid}}")],
                description="New XID errors per rate interval, by XID code, from the kernel log.",
                min_value=0,
            ),
            hs.timeseries(
                "ECC errors",
                "short",
                [hs.target(q.GPU_ECC_INCREASE, _GPU_LEGEND + " {{type}}")],
                description="New volatile ECC errors per rate interval. Uncorrected errors are alerted on.",
                min_value=0,
            ),
            hs.bargauge(
                "Retired pages and remapped rows",
                "short",
                [
                    hs.target(q.GPU_REMAPPED_ROWS, _GPU_LEGEND + " remapped {{type}}"),
                    hs.target(q.GPU_RETIRED_PAGES, _GPU_LEGEND + " retired {{cause}}"),
                ],
                description="Memory rows remapped (Ampere and later) or pages retired (older GPUs) since "
                "manufacture; a growing count means failing memory.",
                thresholds=hs.steps(("green", None), ("orange", 1)),
            ),
            hs.state_timeline(
                "Reset pending",
                "none",
                [hs.target(q.GPU_RESET_PENDING, _GPU_LEGEND)],
                description="A page retirement or row remap waits for a GPU reset to take effect.",
                mappings=hs.YES_NO,
            ),
        ],
    )


def _inventory() -> hs.Row:
    return hs.Row(
        "Inventory, allocation and port",
        [
            hs.table(
                "GPU inventory",
                "none",
                [hs.target(q.GPU_INVENTORY, instant=True, table=True)],
                description="Model, UUID, PCI bus id, driver and VBIOS of each GPU (opencompute_gpu_info).",
                hide=("Time", "__name__", "job", "Value"),
            ),
            hs.table(
                "Advertised GPU models",
                "short",
                [hs.target(q.MINER_SPEC_GPU_MODELS, instant=True, table=True)],
                description="What the miner advertises in its specs: GPU model and how many of it.",
                columns={"A": ("GPUs", "short")},
                hide=("Time", "__name__", "job"),
            ),
            hs.state_timeline(
                "Allocation and port",
                "none",
                [
                    hs.target(q.MINER_ALLOCATED, "{{instance}} allocated"),
                    hs.target(q.MINER_PORT_OPEN, "{{instance}} port open"),
                ],
                description="Allocation to a renter and the public port check over time.",
                mappings=hs.YES_NO,
            ),
            hs.table(
                "Allocated to",
                "none",
                [hs.target(q.MINER_ALLOCATION_INFO, instant=True, table=True)],
                description="The validator hotkey that holds the allocation (empty when not allocated).",
                hide=("Time", "__name__", "job", "Value"),
            ),
            hs.timeseries(
                "Port check age",
                "s",
                [hs.target(q.MINER_PORT_CHECK_AGE, "{{instance}}")],
                description="Time since the exporter last checked the miner's port; the port state is "
                "only as fresh as this.",
                min_value=0,
            ),
        ],
        widths=(8, 4, 4, 4, 4),
    )


def _chain() -> hs.Row:
    """This miner's hotkeys on chain (from the network exporter's chain collector, any job)."""
    legend = "{{hotkey}} (uid {{uid}})"
    return hs.Row(
        "On chain",
        [
            hs.timeseries(
                "Emission per epoch (alpha)",
                "none",
                [hs.target(q.MINER_CHAIN_EMISSION, legend)],
                description="Alpha this miner's uid received in the last epoch, from the network exporter's "
                "chain view. Details on the Subnet chain dashboard.",
                min_value=0,
            ),
            hs.timeseries(
                "Incentive",
                "percentunit",
                [hs.target(q.MINER_CHAIN_INCENTIVE, legend)],
                description="This miner's share of the miner emission.",
                min_value=0,
            ),
            hs.timeseries(
                "Place among miners",
                "short",
                [hs.target(q.MINER_CHAIN_POSITION, legend)],
                description="Place by incentive among uids without a validator permit (1 = highest).",
                min_value=1,
            ),
            hs.timeseries(
                "Pruning score",
                "percentunit",
                [hs.target(q.MINER_CHAIN_PRUNING_SCORE, legend)],
                description="The lowest non-immune pruning score is replaced at the next registration.",
                min_value=0,
            ),
        ],
    )


def build() -> core.Dashboard:
    """The Miner GPUs dashboard."""
    return hs.dashboard(
        uid=UID,
        title="OpenCompute / Miner GPUs",
        description="Per host and GPU health of NI Compute (SN27) miners from the "
        "opencompute miner exporter.",
        variables=[
            hs.job_variable(q.VAR_MINER_JOB),
            hs.hotkey_variable(q.VAR_MINER_HOTKEY),
            hs.instance_variable(q.VAR_MINER_INSTANCE),
            hs.query_variable("gpu", "GPU", q.VAR_MINER_GPU),
        ],
        rows=[
            _overview(),
            _utilization(),
            _workloads(),
            _thermals(),
            _throttling(),
            _errors(),
            _inventory(),
            _chain(),
        ],
    )
