"""Validator PoG: what one validator's ComputeDb says about the miners it tests.

For the validator operator: scores, how fresh the proof-of-GPU results are, challenge success,
and which miners are allocated or penalized. ``$uid`` narrows the per-miner panels.
"""

from __future__ import annotations

from grafanalib import core

from alerts import thresholds
from dashboards import house_style as hs
from dashboards import queries as q
from exporters import dashboard_uids as uids

UID = uids.VALIDATOR_POG
_UID_LEGEND = "uid {{uid}}"


def _overview() -> hs.Row:
    return hs.Row(
        "Overview",
        [
            hs.stat(
                "ComputeDb",
                "none",
                [hs.target(q.VALIDATOR_DB_UP)],
                description="Whether the exporter can read the validator's ComputeDb SQLite file.",
                mappings=hs.UP_DOWN,
            ),
            hs.bargauge(
                "Miners by state",
                "short",
                [hs.target(q.VALIDATOR_MINERS_BY_STATE, "{{state}}")],
                description="Miners known to this validator, queryable, allocated, penalized and "
                "without specs.",
                max_value=256,
                thresholds=hs.steps(("blue", None)),
            ),
            hs.stat(
                "Newest PoG result",
                "s",
                [hs.target(q.VALIDATOR_NEWEST_POG_AGE)],
                description="Age of the newest proof-of-GPU row. A round runs about every 72 minutes; "
                "the PoG-stale alert fires past the red threshold.",
                thresholds=hs.steps(
                    ("green", None), ("orange", 2 * 3600), ("red", thresholds.POG_STALE_SECONDS)
                ),
            ),
            hs.stat(
                "Challenge success",
                "percentunit",
                [hs.target(q.VALIDATOR_CHALLENGE_SUCCESS_RATIO)],
                description="Share of recorded challenges that succeeded, across all miners.",
                thresholds=hs.steps(("red", None), ("green", thresholds.CHALLENGE_SUCCESS_RATIO_MIN)),
            ),
            hs.stat(
                "Inflated score rows",
                "short",
                [hs.target(q.VALIDATOR_INFLATED_SCORES)],
                description="Rows whose score was stored x100 by the original code's bug; the exporter "
                "divides them back, this shows how many it corrected.",
            ),
        ],
        height=5,
        widths=(4, 8, 4, 4, 4),
    )


def _scores() -> hs.Row:
    return hs.Row(
        "Scores",
        [
            hs.timeseries(
                "Miner scores",
                "none",
                [hs.target(q.VALIDATOR_MINER_SCORE, _UID_LEGEND)],
                description="Score per miner on the published 0..100 scale.",
                min_value=0,
                max_value=100,
            ),
            hs.table(
                "Miners",
                "none",
                [
                    hs.target(q.VALIDATOR_MINER_SCORE, instant=True, table=True),
                    hs.target(q.VALIDATOR_POG_SUCCESS_AGE, instant=True, table=True),
                    hs.target(q.VALIDATOR_POG_GPU_COUNT, instant=True, table=True),
                    hs.target(q.VALIDATOR_CHALLENGE_SUCCESS_BY_MINER, instant=True, table=True),
                    hs.target(q.VALIDATOR_MINER_ALLOCATED, instant=True, table=True),
                ],
                description="One row per miner uid: score, age of the last successful PoG, GPUs proven, "
                "challenge success and allocation.",
                columns={
                    "A": ("Score", "none"),
                    "B": ("Last PoG success", "s"),
                    "C": ("GPUs proven", "short"),
                    "D": ("Challenge success", "percentunit"),
                    "E": ("Allocated", "bool_yes_no"),
                },
            ),
        ],
        height=10,
    )


def _freshness() -> hs.Row:
    return hs.Row(
        "Proof-of-GPU freshness",
        [
            hs.timeseries(
                "Age of newest PoG row per miner",
                "s",
                [hs.target(q.VALIDATOR_POG_AGE, _UID_LEGEND)],
                description="Time since the newest pog_stats row per miner, successful or not.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.POG_STALE_SECONDS)),
            ),
            hs.timeseries(
                "Age of last successful PoG per miner",
                "s",
                [hs.target(q.VALIDATOR_POG_SUCCESS_AGE, _UID_LEGEND)],
                description="Time since the newest successful (non-NULL) pog_stats row per miner.",
                min_value=0,
            ),
            hs.table(
                "Proven GPUs",
                "none",
                [hs.target(q.VALIDATOR_POG_GPU_INFO, instant=True, table=True)],
                description="GPU model each miner proved in its latest proof-of-GPU.",
                hide=("Time", "__name__", "job", "Value"),
            ),
            hs.timeseries(
                "PoG history rows",
                "short",
                [hs.target(q.VALIDATOR_POG_HISTORY_ROWS, _UID_LEGEND)],
                description="pog_stats rows kept per miner (the original keeps a bounded history).",
                min_value=0,
            ),
        ],
    )


def _challenges() -> hs.Row:
    return hs.Row(
        "Challenges",
        [
            hs.timeseries(
                "Challenge success per miner",
                "percentunit",
                [hs.target(q.VALIDATOR_CHALLENGE_SUCCESS_BY_MINER, _UID_LEGEND)],
                description="Share of recorded challenges each miner passed.",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "Average challenge time",
                "s",
                [hs.target(q.VALIDATOR_CHALLENGE_ELAPSED, _UID_LEGEND)],
                description="Mean elapsed time of each miner's recorded challenges.",
                min_value=0,
            ),
        ],
    )


def _allocation() -> hs.Row:
    return hs.Row(
        "Allocation, penalties and database",
        [
            hs.timeseries(
                "Allocated and penalized miners",
                "short",
                [hs.target(q.VALIDATOR_ALLOCATED_AND_PENALIZED, "{{state}}")],
                description="How many miners this validator sees allocated and how many it penalizes.",
                min_value=0,
            ),
            hs.state_timeline(
                "Allocation per miner",
                "none",
                [hs.target(q.VALIDATOR_MINER_ALLOCATED, _UID_LEGEND)],
                description="Which miners this validator records as allocated, over time.",
                mappings=hs.YES_NO,
            ),
            hs.timeseries(
                "ComputeDb errors",
                "short",
                [hs.target(q.VALIDATOR_DB_ERRORS, "{{instance}} {{reason}}")],
                description="Failed reads of ComputeDb per rate interval, by bounded reason "
                "(missing, locked, corrupt, schema, error).",
                min_value=0,
            ),
        ],
    )


def _chain() -> hs.Row:
    """This validator's hotkey on chain (from the network exporter's chain collector, any job)."""
    legend = "{{hotkey}} (uid {{uid}})"
    return hs.Row(
        "On chain",
        [
            hs.timeseries(
                "This validator: blocks since weights were set",
                "none",
                [hs.target(q.VALIDATOR_CHAIN_WEIGHTS_LAG, legend)],
                description="From the network exporter's chain view. The red line is the "
                "OpenComputeOwnValidatorWeightsStale threshold.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.CHAIN_WEIGHTS_STALE_BLOCKS)),
            ),
            hs.timeseries(
                "This validator: validator trust and dividends",
                "percentunit",
                [
                    hs.target(q.VALIDATOR_CHAIN_VALIDATOR_TRUST, "vtrust {{hotkey}}"),
                    hs.target(q.VALIDATOR_CHAIN_DIVIDENDS, "dividends {{hotkey}}"),
                ],
                description="This validator's validator trust and its share of validator emission.",
                min_value=0,
                max_value=1,
            ),
            hs.timeseries(
                "This validator: emission per epoch (alpha)",
                "none",
                [hs.target(q.VALIDATOR_CHAIN_EMISSION, legend)],
                description="Alpha this validator's uid received in the last epoch.",
                min_value=0,
            ),
        ],
    )


def build() -> core.Dashboard:
    """The Validator PoG dashboard."""
    return hs.dashboard(
        uid=UID,
        title="OpenCompute / Validator PoG",
        description="Proof-of-GPU results, scores and challenges from one NI Compute "
        "(SN27) validator's ComputeDb.",
        variables=[
            hs.job_variable(q.VAR_VALIDATOR_JOB),
            hs.hotkey_variable(q.VAR_VALIDATOR_HOTKEY),
            hs.instance_variable(q.VAR_VALIDATOR_INSTANCE),
            hs.query_variable("uid", "Miner uid", q.VAR_VALIDATOR_UID),
        ],
        rows=[_overview(), _scores(), _freshness(), _challenges(), _allocation(), _chain()],
    )
