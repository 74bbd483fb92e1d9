"""Alerts about our miners: penalties, allocation, reachability and honest specs.

"Ours" means a hotkey declared to the network exporter (``--network.our-hotkeys``, exported as
``opencompute_network_our_hotkey_info``) or run by a miner exporter this Prometheus scrapes:
network-exporter series are joined with them on ``hotkey`` (see ``builder.ours``), so these
alerts keep firing while our miner's own exporter is down.
"""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert, ours
from exporters import dashboard_uids as uids

STEM = "miner"


def alerts() -> list[Alert]:
    """The miner alerts, built from the current thresholds."""
    return [
        Alert(
            name="OpenComputeMinerPenalized",
            expr=ours("max by (hotkey) (opencompute_network_miner_penalty_enforced == 1)"),
            for_=t.MINER_PENALIZED_FOR,
            severity="critical",
            summary="One of our miners is penalized by the validators.",
            description=(
                "Miner {{ $labels.hotkey }} is on a penalty authority's penalized_hotkeys_checklist "
                "(--network.penalty-authority), the list validators apply: its score is zeroed, so it "
                "earns no rewards and gets no allocations until it is cleared."
            ),
            dashboard_uid=uids.NETWORK,
        ),
        Alert(
            name="OpenComputeMinerListedAsPenalized",
            expr=ours(
                "max by (hotkey, list) (opencompute_network_miner_penalized == 1)\n"
                "unless on (hotkey)\n"
                "max by (hotkey) (opencompute_network_miner_penalty_enforced == 1)"
            ),
            for_=t.MINER_LISTED_AS_PENALIZED_FOR,
            severity="warning",
            summary="One of our miners is on a validator's penalty list that is not enforced.",
            description=(
                "Miner {{ $labels.hotkey }} is on a trusted validator's {{ $labels.list }} list, but "
                "not on a penalty authority's checklist, so its rewards are not affected yet. The "
                "listing usually names a real problem (closed port, failed allocation): fix it before "
                "an authority lists it too."
            ),
            dashboard_uid=uids.NETWORK,
        ),
        Alert(
            name="OpenComputeMinerAllocationLost",
            expr=(
                ours(
                    "max by (hotkey) (max_over_time("
                    f"opencompute_network_miner_allocated[{t.ALLOCATION_LOST_WINDOW}]))\n"
                    "unless\n"
                    "max by (hotkey) (opencompute_network_miner_allocated)"
                )
                + "\nand on ()\ncount(opencompute_network_miners_allocated)"
            ),
            for_=t.ALLOCATION_LOST_FOR,
            severity="warning",
            summary="One of our miners lost its allocation.",
            description=(
                f"Miner {{{{ $labels.hotkey }}}} was allocated within the last {t.ALLOCATION_LOST_WINDOW} "
                "and no trusted validator claims it now. If the renter did not release it, check the "
                "miner's logs and the allocating validator."
            ),
            dashboard_uid=uids.NETWORK,
        ),
        Alert(
            name="OpenComputeMinerPortClosed",
            expr="opencompute_miner_port_open == 0",
            for_=t.MINER_PORT_CLOSED_FOR,
            severity="critical",
            summary="The miner's public port is closed.",
            description=(
                "The port check on {{ $labels.instance }} has failed for "
                f"{t.MINER_PORT_CLOSED_FOR}: validators cannot reach the miner, so challenges and "
                "proof-of-GPU fail and it will be penalized."
            ),
            dashboard_uid=uids.MINER_GPUS,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeMinerClaimMismatch",
            expr=ours("max by (uid, hotkey, field) (opencompute_network_miner_claim_mismatch == 1)"),
            for_=t.CLAIM_MISMATCH_FOR,
            severity="warning",
            summary="One of our miners advertises hardware its proof-of-GPU does not confirm.",
            description=(
                "For miner {{ $labels.hotkey }} (uid {{ $labels.uid }}) the published specs and the "
                "validators' proof-of-GPU disagree on {{ $labels.field }}. Validators score the "
                "proven hardware; fix the specs or find the GPU that failed its proof."
            ),
            dashboard_uid=uids.NETWORK,
        ),
    ]
