"""Alerts from the chain view (the network exporter's chain collector): our hotkeys' standing on chain.

"Ours" is ``opencompute_network_our_hotkey_info`` (hotkeys declared with ``--network.our-hotkeys``,
or owned by a ``--network.our-coldkeys`` coldkey), joined on ``hotkey`` with ``max by (hotkey)`` so
two network exporter replicas count once. Alerts about absence (deregistered) only judge a
fresh chain view, so an exporter that cannot reach the chain raises the stale-view alert instead.
"""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert
from exporters import dashboard_uids as uids

STEM = "chain"
OURS = "max by (hotkey) (opencompute_network_our_hotkey_info)"
_KEY = "on (job, instance, uid, hotkey)"


def _ours(expr: str) -> str:
    """Keep only series whose ``hotkey`` is one of ours (value kept: ours is always 1)."""
    inner = "\n".join("  " + line for line in expr.strip().splitlines())
    return f"(\n{inner}\n)\n* on (hotkey) group_left ()\n{OURS}"


def _fresh_view() -> str:
    return f"(time() - max(opencompute_chain_last_success_timestamp_seconds)) < {t.CHAIN_STALE_SECONDS}"


def _non_immune(metric: str) -> str:
    return f"({metric} unless {_KEY} opencompute_chain_neuron_immune == 1)"


def _lost(metric: str, now: str, before: str) -> str:
    """``metric`` is ``now`` while its best value within the lookback was ``before``."""
    return (
        f"max by (hotkey, uid) (\n"
        f"  {metric} {now}\n"
        f"  and {_KEY}\n"
        f"  max_over_time({metric}[{t.CHAIN_LOST_LOOKBACK}]) {before}\n"
        f")"
    )


def alerts() -> list[Alert]:
    """The chain alerts, built from the current thresholds."""
    pruning = _non_immune("opencompute_chain_neuron_pruning_score_ratio")
    return [
        Alert(
            name="OpenComputeOwnHotkeyDeregistered",
            expr=(
                f"(\n  {OURS}\n  unless on (hotkey)\n  max by (hotkey) (opencompute_chain_neuron_info)\n)\n"
                "and on (hotkey)\n"
                "max by (hotkey) (\n"
                f"  max_over_time(opencompute_chain_neuron_info[{t.CHAIN_DEREGISTERED_LOOKBACK}])\n"
                ")\n"
                f"and on ()\n{_fresh_view()}"
            ),
            for_=t.CHAIN_DEREGISTERED_FOR,
            severity="critical",
            summary="One of our hotkeys was deregistered from the subnet.",
            description=(
                "Hotkey {{ $labels.hotkey }} was registered on the subnet within the last "
                f"{t.CHAIN_DEREGISTERED_LOOKBACK} and is not in the current chain view: its uid was given to "
                "a new registration. It earns nothing until it registers again."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeOwnHotkeyUidChanged",
            expr=_ours(
                "count by (hotkey) (\n"
                "  max by (hotkey, uid, registration_block) (\n"
                f"    max_over_time(opencompute_chain_neuron_info[{t.CHAIN_UID_CHANGE_WINDOW}])\n"
                "  )\n"
                ") > 1"
            ),
            severity="warning",
            summary="One of our hotkeys changed uid.",
            description=(
                "Hotkey {{ $labels.hotkey }} had {{ $value }} registrations (uid or registration block) "
                f"within the last {t.CHAIN_UID_CHANGE_WINDOW}: it was deregistered and registered again. "
                "It starts again from zero trust and incentive, and anything keyed by its old uid is stale."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeOwnNeuronNextToPrune",
            expr=_ours(
                "max by (hotkey, uid) (\n"
                f"  {pruning}\n"
                "  == on (job, instance) group_left ()\n"
                f"  min by (job, instance) ({pruning})\n"
                ")"
            ),
            for_=t.CHAIN_NEXT_TO_PRUNE_FOR,
            severity="warning",
            summary="One of our neurons is next in line for deregistration.",
            description=(
                "Uid {{ $labels.uid }} (hotkey {{ $labels.hotkey }}) has the lowest pruning score "
                '({{ $value | printf "%.3f" }}) among the subnet\'s non-immune neurons (ties included): '
                "the next registration on the subnet takes its slot."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeOwnValidatorWeightsStale",
            expr=_ours(
                "max by (hotkey, uid) (\n"
                f"  opencompute_chain_neuron_blocks_since_last_update > {t.CHAIN_WEIGHTS_STALE_BLOCKS}\n"
                f"  and {_KEY}\n"
                "  opencompute_chain_neuron_validator_permit == 1\n"
                ")"
            ),
            for_=t.CHAIN_WEIGHTS_STALE_FOR,
            severity="warning",
            summary="One of our validators has not set weights for too many blocks.",
            description=(
                "Validator uid {{ $labels.uid }} (hotkey {{ $labels.hotkey }}) last set weights "
                "{{ $value }} blocks ago (more than "
                f"{t.CHAIN_WEIGHTS_STALE_BLOCKS}). Its vtrust and dividends decay, and past the activity "
                "cutoff it becomes inactive."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeOwnValidatorPermitLost",
            expr=_ours(_lost("opencompute_chain_neuron_validator_permit", "== 0", "== 1")),
            for_=t.CHAIN_PERMIT_LOST_FOR,
            severity="warning",
            summary="One of our validators lost its validator permit.",
            description=(
                "Uid {{ $labels.uid }} (hotkey {{ $labels.hotkey }}) held a validator permit within the last "
                f"{t.CHAIN_LOST_LOOKBACK} and no longer does: its weights no longer count and it earns no "
                "dividends."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeOwnEmissionZero",
            expr=_ours(_lost("opencompute_chain_neuron_epoch_emission_alpha", "== 0", "> 0")),
            for_=t.CHAIN_EMISSION_ZERO_FOR,
            severity="warning",
            summary="Emission of one of our neurons dropped to zero.",
            description=(
                "Uid {{ $labels.uid }} (hotkey {{ $labels.hotkey }}) earned alpha within the last "
                f"{t.CHAIN_LOST_LOOKBACK} and received none in the last epoch."
            ),
            dashboard_uid=uids.SUBNET_CHAIN,
        ),
        Alert(
            name="OpenComputeChainViewStale",
            expr=f"time() - opencompute_chain_last_success_timestamp_seconds > {t.CHAIN_STALE_SECONDS}",
            for_=t.CHAIN_STALE_FOR,
            severity="warning",
            summary="The network exporter's chain view is stale.",
            description=(
                "{{ $labels.instance }} last read the chain {{ $value | humanizeDuration }} ago (or never); "
                "chain metrics are as old as that and the deregistration alert cannot fire."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
        ),
    ]
