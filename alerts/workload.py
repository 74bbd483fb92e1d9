"""Alerts about what runs on a miner's GPUs, tied to its allocation state (workload collector).

All four join series of one miner exporter (``on (job, instance)``): the workload collector's
``opencompute_gpu_processes{workload}`` / ``opencompute_miner_containers{workload}`` and the
allocation the same exporter reads from trusted validators (``opencompute_miner_allocated``).
"""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert
from exporters import dashboard_uids as uids

STEM = "workload"


def alerts() -> list[Alert]:
    """The workload alerts, built from the current thresholds."""
    foreign = t.regex_of(t.FOREIGN_WORKLOADS)
    quiet = t.regex_of(t.ATTRIBUTION_PROBLEMS_NOT_ALERTED)
    return [
        Alert(
            name="OpenComputeGPUBusyWhileNotAllocated",
            expr=(
                "sum by (job, instance, gpu, uuid) "
                f'(opencompute_gpu_processes{{workload=~"{foreign}"}}) > 0\n'
                "and on (job, instance)\n"
                "opencompute_miner_allocated == 0"
            ),
            for_=t.GPU_BUSY_UNALLOCATED_FOR,
            severity="warning",
            summary="A GPU of a miner that is not allocated runs someone else's work.",
            description=(
                "GPU {{ $labels.gpu }} ({{ $labels.uuid }}) on {{ $labels.instance }} has had "
                "{{ $value }} process(es) that are neither the rental nor the SN27 checks (another "
                f"container, a host process, or unattributed) for {t.GPU_BUSY_UNALLOCATED_FOR} while "
                "the miner is not allocated. A validator's proof-of-GPU on this GPU will fail or "
                "score low: stop the stranger."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPURentalIdle",
            expr=(
                'sum by (job, instance) (opencompute_gpu_processes{workload="rental"}) == 0\n'
                "and on (job, instance)\n"
                "opencompute_miner_allocated == 1\n"
                "and on (job, instance)\n"
                "opencompute_miner_docker_up == 1\n"
                "unless on (job, instance)\n"
                'max by (job, instance) (opencompute_gpu_process_attribution_problem{reason=~"proc_.*"}) == 1'
            ),
            for_=t.RENTAL_IDLE_FOR,
            severity="info",
            summary="A rented miner has had no rental process on any GPU for hours.",
            description=(
                "{{ $labels.instance }} is allocated, yet no process of the renter's container has "
                f"run on any of its GPUs for {t.RENTAL_IDLE_FOR}. The renter may simply be idle; a "
                "rental that broke (container without GPU access, renter locked out) looks the same."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeMinerRentalWithoutAllocation",
            expr=(
                'max by (job, instance) (opencompute_miner_containers{workload="rental"}) > 0\n'
                "and on (job, instance)\n"
                "opencompute_miner_allocated == 0"
            ),
            for_=t.RENTAL_WITHOUT_ALLOCATION_FOR,
            severity="warning",
            summary="The renter's container runs while the network says the miner is not allocated.",
            description=(
                "The rental container on {{ $labels.instance }} has been running for "
                f"{t.RENTAL_WITHOUT_ALLOCATION_FOR} while no trusted validator lists this miner as "
                "allocated: either the allocation is not visible to the network (the allocating "
                "validator's run) or a rental outlived its allocation and the GPUs are used unpaid."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeGPUProcessAttributionDegraded",
            expr=(
                "max by (job, instance, reason) (min_over_time("
                f'opencompute_gpu_process_attribution_problem{{reason!~"{quiet}"}}'
                f"[{t.ATTRIBUTION_PROBLEM_WINDOW}])) == 1"
            ),
            for_=t.ATTRIBUTION_PROBLEM_FOR,
            severity="info",
            summary="The miner exporter cannot tell which workload runs on the GPUs.",
            description=(
                "On {{ $labels.instance }} GPU processes have not been attributed to workloads for "
                f"over {t.ATTRIBUTION_PROBLEM_WINDOW} (reason {{{{ $labels.reason }}}}): they are "
                "counted as workload=unknown, and the rental and busy-GPU alerts cannot see them."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
    ]
