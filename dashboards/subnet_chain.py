"""Subnet / chain: what the chain says about our hotkeys and the whole subnet.

From the network exporter's chain collector (one metagraph read per cadence): emission and
incentive of our hotkeys over time, their place among miners, trust and consensus, our
validators' weight-setting lag and validator trust, the pruning line, and every uid of the
subnet in a table. "Ours" is ``opencompute_network_our_hotkey_info`` (``--network.our-hotkeys``
and ``--network.our-coldkeys``).
"""

from __future__ import annotations

from grafanalib import core

from alerts import thresholds
from dashboards import house_style as hs
from dashboards import queries as q
from exporters import dashboard_uids as uids

UID = uids.SUBNET_CHAIN
_OURS = "{{hotkey}} (uid {{uid}})"


def _overview() -> hs.Row:
    return hs.Row(
        "Subnet",
        [
            hs.stat(
                "Block", "none", [hs.target(q.CHAIN_BLOCK)], description="Block the chain view was read at."
            ),
            hs.stat(
                "Tempo",
                "none",
                [hs.target(q.CHAIN_TEMPO)],
                description="Blocks between epochs; emission, incentive and trust change once per epoch.",
            ),
            hs.stat(
                "Immunity period",
                "none",
                [hs.target(q.CHAIN_IMMUNITY_PERIOD)],
                description="Blocks a new registration cannot be pruned for.",
            ),
            hs.stat(
                "Uids",
                "short",
                [
                    hs.target(q.CHAIN_NEURONS, "registered"),
                    hs.target(q.CHAIN_SUBNET_VALIDATORS, "validators"),
                    hs.target(q.CHAIN_SUBNET_IMMUNE, "immune"),
                ],
                description="Uids in the view, those with a validator permit, and those still immune.",
            ),
            hs.stat(
                "Our hotkeys registered",
                "short",
                [hs.target(q.CHAIN_OURS_REGISTERED)],
                description="Our hotkeys (declared, or owned by a declared coldkey) that hold a uid.",
            ),
            hs.stat(
                "Emission per epoch",
                "none",
                [hs.target(q.CHAIN_SUBNET_EMISSION)],
                description="Alpha emitted to all uids in the last epoch.",
            ),
            hs.stat(
                "Chain view age",
                "s",
                [hs.target(q.CHAIN_VIEW_AGE)],
                description="How old the served chain view is; reads happen in the background.",
                thresholds=hs.steps(("green", None), ("red", thresholds.CHAIN_STALE_SECONDS)),
            ),
        ],
        height=4,
    )


def _earnings() -> hs.Row:
    return hs.Row(
        "Our hotkeys: earnings",
        [
            hs.timeseries(
                "Emission per epoch (alpha)",
                "none",
                [hs.target(q.CHAIN_OUR_EMISSION, _OURS)],
                description="Alpha each of our uids received in the subnet's last epoch (one tempo).",
                min_value=0,
            ),
            hs.timeseries(
                "Incentive",
                "percentunit",
                [hs.target(q.CHAIN_OUR_INCENTIVE, _OURS)],
                description="Each of our miners' share of the miner emission.",
                min_value=0,
            ),
            hs.timeseries(
                "Place among miners",
                "short",
                [hs.target(q.CHAIN_OUR_MINER_POSITION, _OURS)],
                description="Place by incentive among uids without a validator permit (1 = highest).",
                min_value=1,
            ),
            hs.timeseries(
                "Stake (alpha)",
                "none",
                [hs.target(q.CHAIN_OUR_STAKE, _OURS)],
                description="Total stake on each of our hotkeys, in the subnet's alpha.",
                min_value=0,
            ),
        ],
    )


def _standing() -> hs.Row:
    return hs.Row(
        "Our hotkeys: standing",
        [
            hs.timeseries(
                "Trust",
                "percentunit",
                [hs.target(q.CHAIN_OUR_TRUST, _OURS)],
                description="How much of each of our miners' rank survives consensus clipping.",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Consensus",
                "percentunit",
                [hs.target(q.CHAIN_OUR_CONSENSUS, _OURS)],
                description="Stake-weighted consensus on each of our uids.",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Pruning score",
                "percentunit",
                [hs.target(q.CHAIN_OUR_PRUNING_SCORE, _OURS)],
                description="The lowest non-immune pruning score on the subnet is replaced at the next "
                "registration (OpenComputeOwnNeuronNextToPrune).",
                min_value=0,
            ),
            hs.state_timeline(
                "Immune",
                "none",
                [hs.target(q.CHAIN_OUR_IMMUNE, _OURS)],
                description="Whether each of our uids is still inside the immunity period.",
                mappings=hs.YES_NO,
            ),
        ],
    )


def _validators() -> hs.Row:
    return hs.Row(
        "Our validators",
        [
            hs.timeseries(
                "Blocks since weights were set",
                "none",
                [hs.target(q.CHAIN_OUR_WEIGHTS_LAG, _OURS)],
                description="Weight-setting lag of our uids holding a validator permit. The red line is "
                "the OpenComputeOwnValidatorWeightsStale threshold.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.CHAIN_WEIGHTS_STALE_BLOCKS)),
            ),
            hs.timeseries(
                "Validator trust",
                "percentunit",
                [hs.target(q.CHAIN_OUR_VALIDATOR_TRUST, _OURS)],
                description="Validator trust of our uids holding a validator permit.",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Chain reads",
                "short",
                [
                    hs.target(q.CHAIN_READ_FAILURES, "failed: {{reason}}"),
                    hs.target(q.CHAIN_DECODE_ERRORS, "neurons not decoded"),
                ],
                description="Chain reads that produced no view, by reason, and neurons left out because "
                "their record did not decode.",
                min_value=0,
            ),
        ],
        widths=(10, 8, 6),
    )


def _subnet() -> hs.Row:
    return hs.Row(
        "Whole subnet",
        [
            hs.bargauge(
                "Top emission (10 uids)",
                "none",
                [hs.target(q.CHAIN_TOP_EMISSION, "uid {{uid}}")],
                description="The ten uids that received the most alpha in the last epoch.",
                max_value=None,
                thresholds=hs.steps(("blue", None)),
            ),
            hs.table(
                "Uids",
                "none",
                [
                    hs.target(q.CHAIN_NEURONS_TABLE, instant=True, table=True),
                    hs.target(q.CHAIN_NEURONS_TABLE_STAKE, instant=True, table=True),
                    hs.target(q.CHAIN_NEURONS_TABLE_EMISSION, instant=True, table=True),
                    hs.target(q.CHAIN_NEURONS_TABLE_INCENTIVE, instant=True, table=True),
                    hs.target(q.CHAIN_NEURONS_TABLE_LAG, instant=True, table=True),
                    hs.target(q.CHAIN_NEURONS_TABLE_PRUNING, instant=True, table=True),
                ],
                description="Every uid of the subnet (filtered by $hotkey): coldkey, stake, emission, "
                "incentive, blocks since weights were set and pruning score.",
                columns={
                    "A": ("Registered", "none"),
                    "B": ("Stake (alpha)", "none"),
                    "C": ("Emission (alpha/epoch)", "none"),
                    "D": ("Incentive", "percentunit"),
                    "E": ("Blocks since weights", "none"),
                    "F": ("Pruning score", "percentunit"),
                },
                hide=("Time", "__name__", "job", "instance"),
            ),
        ],
        widths=(8, 16),
        height=10,
    )


def build() -> core.Dashboard:
    """The Subnet / chain dashboard."""
    return hs.dashboard(
        uid=UID,
        title="OpenCompute / Subnet chain",
        description="The subnet's metagraph from the opencompute network exporter's chain collector: "
        "our hotkeys' emission, incentive, trust and weight-setting, and every uid.",
        variables=[
            hs.job_variable(q.VAR_NETWORK_JOB),
            hs.instance_variable(q.VAR_NETWORK_INSTANCE),
            hs.hotkey_variable(q.VAR_CHAIN_HOTKEY),
        ],
        rows=[_overview(), _earnings(), _standing(), _validators(), _subnet()],
    )
