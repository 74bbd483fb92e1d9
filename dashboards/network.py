"""Network: the subnet-wide verified view from the network exporter's cached snapshot.

Allocated and penalized miners over time (and which of them are ours: hotkeys declared with the
network exporter's --network.our-hotkeys, or whose miner exporter this Prometheus scrapes), GPU
models across the subnet, how much validators agree, and the
integrity of the runs the view is built from (weak signatures, rejections, stale validators).
"""

from __future__ import annotations

from grafanalib import core

from alerts import thresholds
from dashboards import house_style as hs
from dashboards import queries as q
from exporters import dashboard_uids as uids

UID = uids.NETWORK
AUTHORITY_SEEN = [
    {
        "type": "value",
        "options": {
            "0": {"text": "No", "color": "orange", "index": 0},
            "1": {"text": "Yes", "color": "green", "index": 1},
        },
    }
]


def _overview() -> hs.Row:
    return hs.Row(
        "Overview",
        [
            hs.stat(
                "Allocated miners",
                "short",
                [hs.target(q.NETWORK_MINERS_ALLOCATED)],
                description="Miners allocated to a renter according to trusted validators.",
            ),
            hs.stat(
                "Penalized miners",
                "short",
                [
                    hs.target(q.NETWORK_MINERS_PENALTY_ENFORCED, "enforced"),
                    hs.target(q.NETWORK_MINERS_PENALIZED, "listed"),
                ],
                description="Enforced: miners on a penalty authority's checklist (their score is "
                "zeroed). Listed: miners on any trusted validator's penalty list.",
            ),
            hs.stat(
                "Our miners allocated",
                "short",
                [hs.target(q.NETWORK_OUR_MINERS_ALLOCATED)],
                description="Allocated miners that are ours (declared with --network.our-hotkeys, or "
                "run by a miner exporter this Prometheus scrapes).",
            ),
            hs.stat(
                "Our miners penalized",
                "short",
                [
                    hs.target(q.NETWORK_OUR_MINERS_PENALTY_ENFORCED, "enforced"),
                    hs.target(q.NETWORK_OUR_MINERS_LISTED_NOT_ENFORCED, "listed only"),
                ],
                description="Our miners (declared with --network.our-hotkeys, or run by a scraped "
                "miner exporter) whose penalty is enforced (pages) or that are only listed by some "
                "validator (warns).",
                thresholds=hs.steps(("green", None), ("red", 1)),
            ),
            hs.stat(
                "Trusted validators",
                "short",
                [hs.target(q.NETWORK_TRUSTED_VALIDATORS)],
                description="Validators whose runs the view trusts (stake and permit from the chain, or "
                "the configured fallback).",
            ),
            hs.stat(
                "Trust source",
                "none",
                [hs.target(q.NETWORK_TRUST_SOURCE, "{{source}}")],
                description="Where the trusted validator set came from: chain, cache, allowlist or none.",
                text_mode="name",
            ),
            hs.stat(
                "Snapshot age",
                "s",
                [hs.target(q.NETWORK_SNAPSHOT_AGE)],
                description="Age of the oldest role snapshot the exporter serves; everything on this "
                "dashboard is as old as this.",
                thresholds=hs.steps(("green", None), ("red", thresholds.NETWORK_REFRESH_STALE_SECONDS)),
            ),
            hs.stat(
                "Allocated but unregistered",
                "short",
                [hs.target(q.NETWORK_ALLOCATED_UNREGISTERED)],
                description="Hotkeys claimed as allocated that are no longer registered on the subnet.",
            ),
        ],
        height=4,
    )


def _allocation() -> hs.Row:
    return hs.Row(
        "Allocation and penalties",
        [
            hs.timeseries(
                "Allocated and penalized miners",
                "short",
                [
                    hs.target(q.NETWORK_ALLOCATED_OVER_TIME, "allocated"),
                    hs.target(q.NETWORK_PENALIZED_OVER_TIME, "penalized (listed)"),
                    hs.target(q.NETWORK_PENALTY_ENFORCED_OVER_TIME, "penalized (enforced)"),
                ],
                description="Subnet-wide allocated miners, and penalized miners: listed by any trusted "
                "validator, and enforced (on a penalty authority's checklist).",
                min_value=0,
            ),
            hs.table(
                "Penalized miners",
                "none",
                [hs.target(q.NETWORK_PENALIZED_MINERS, instant=True, table=True)],
                description="Hotkeys on a trusted validator's penalty list: which list and the status "
                "code when the list gives one. Only a penalty authority's penalized_hotkeys_checklist "
                "is enforced.",
                hide=("Time", "__name__", "job", "instance", "Value"),
            ),
            hs.bargauge(
                "Allocation claims",
                "short",
                [hs.target(q.NETWORK_ALLOCATION_CLAIMS, "{{hotkey}}")],
                description="How many trusted validators claim each allocated miner; more than one means "
                "validators disagree about who holds it.",
                max_value=None,
                thresholds=hs.steps(("green", None), ("orange", 2)),
            ),
            hs.stat(
                "Penalty authority seen",
                "none",
                [hs.target(q.NETWORK_PENALTY_AUTHORITY_SEEN)],
                description="Whether a trusted, verified run of a penalty authority "
                "(--network.penalty-authority, NI's validator by default) is in the snapshot. At No, "
                "nothing can show as enforced.",
                mappings=AUTHORITY_SEEN,
            ),
        ],
        widths=(8, 8, 5, 3),
    )


def _gpus() -> hs.Row:
    return hs.Row(
        "GPU models across the subnet",
        [
            hs.bargauge(
                "GPUs by model (proof-of-GPU)",
                "short",
                [hs.target(q.NETWORK_POG_GPUS_BY_MODEL, "{{gpu_name}}")],
                description="GPUs proven by proof-of-GPU, per model, from the dominant validator stats.",
                max_value=None,
                thresholds=hs.steps(("blue", None)),
            ),
            hs.bargauge(
                "GPUs by model (claimed specs)",
                "short",
                [hs.target(q.NETWORK_CLAIMED_GPUS_BY_MODEL, "{{gpu_name}}")],
                description="GPUs miners claim in their published specs, per model.",
                max_value=None,
                thresholds=hs.steps(("purple", None)),
            ),
            hs.timeseries(
                "Miners by GPU model",
                "short",
                [hs.target(q.NETWORK_MINERS_BY_MODEL, "{{gpu_name}}")],
                description="Miners per proven GPU model over time.",
                min_value=0,
                stack=True,
            ),
            hs.table(
                "Claimed vs proven mismatches",
                "none",
                [hs.target(q.NETWORK_CLAIM_MISMATCHES, instant=True, table=True)],
                description="Miners whose claimed specs disagree with their proof-of-GPU result, by field "
                "(gpu_name or gpu_count).",
                hide=("Time", "__name__", "job", "instance", "Value"),
            ),
        ],
    )


def _agreement() -> hs.Row:
    return hs.Row(
        "Validator agreement",
        [
            hs.timeseries(
                "Agreement",
                "percentunit",
                [hs.target(q.NETWORK_AGREEMENT_RATIO, "agreeing / reporting")],
                description="Across all miners, the share of reporting validators that agree with the "
                "dominant stats entry.",
                min_value=0,
                max_value=1,
            ),
            hs.bargauge(
                "Least agreement (10 miners)",
                "percentunit",
                [hs.target(q.NETWORK_LEAST_AGREEMENT, "uid {{uid}}")],
                description="The ten miners whose stats validators agree on least.",
                max_value=1,
                thresholds=hs.steps(("red", None), ("orange", 0.5), ("green", 0.8)),
            ),
            hs.bargauge(
                "Widest score spread (10 miners)",
                "none",
                [hs.target(q.NETWORK_SCORE_SPREAD_TOP, "uid {{uid}}")],
                description="The ten miners with the widest spread between validators' scores "
                "(0..100 scale).",
                max_value=100,
            ),
            hs.table(
                "Miner scores",
                "none",
                [hs.target(q.NETWORK_MINER_SCORES, instant=True, table=True)],
                description="Dominant score per miner with its hotkey and proven GPU (filtered by $hotkey).",
                columns={"A": ("Score", "none")},
            ),
        ],
    )


def _integrity() -> hs.Row:
    return hs.Row(
        "Run integrity",
        [
            hs.timeseries(
                "Runs by signature",
                "short",
                [hs.target(q.NETWORK_RUNS_BY_SIGNATURE, "{{role}} {{signature}}")],
                description="Runs in the snapshot by role and signature: v2 (signed over the config) or "
                "v1_only (signed over the run id only, so the config is not protected).",
                min_value=0,
                stack=True,
            ),
            hs.timeseries(
                "Rejected runs",
                "short",
                [hs.target(q.NETWORK_RUNS_REJECTED, "{{role}} {{reason}}")],
                description="Runs in the current snapshot left out of the view, by bounded reason "
                "(bad or missing signature, tampering, untrusted signer, ...).",
                min_value=0,
            ),
            hs.timeseries(
                "Rejections",
                "short",
                [hs.target(q.NETWORK_REJECTION_RATE, "{{role}} {{reason}}")],
                description="New run rejections per rate interval (the first ones included), by role "
                "and reason.",
                min_value=0,
            ),
            hs.timeseries(
                "Stale runs",
                "short",
                [hs.target(q.NETWORK_RUNS_STALE, "{{role}}")],
                description="Runs left out of the view because they have not been updated for too long.",
                min_value=0,
            ),
        ],
    )


def _validators() -> hs.Row:
    return hs.Row(
        "Validators",
        [
            hs.stat(
                "Stale validators",
                "short",
                [hs.target(q.NETWORK_STALE_VALIDATORS)],
                description="Trusted validators whose run has not been updated within the stale threshold.",
                thresholds=hs.steps(("green", None), ("orange", 1)),
            ),
            hs.timeseries(
                "Time since validator update",
                "s",
                [hs.target(q.NETWORK_VALIDATOR_UPDATE_AGE, "{{hotkey}}")],
                description="Per trusted validator, time since its run was last updated. The dashed line "
                "is the stale-validator threshold.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.VALIDATOR_STALE_SECONDS)),
            ),
            hs.table(
                "Validators",
                "none",
                [hs.target(q.NETWORK_VALIDATORS_TRUSTED, instant=True, table=True)],
                description="Validators seen in the runs and whether the view trusts them.",
                columns={"A": ("Trusted", "bool_yes_no")},
            ),
        ],
        widths=(4, 12, 8),
    )


def build() -> core.Dashboard:
    """The Network dashboard."""
    return hs.dashboard(
        uid=UID,
        title="OpenCompute / Network",
        description="Subnet-wide verified view of NI Compute (SN27) from the opencompute network exporter.",
        variables=[
            hs.job_variable(q.VAR_NETWORK_JOB),
            hs.instance_variable(q.VAR_NETWORK_INSTANCE),
            hs.hotkey_variable(q.VAR_NETWORK_HOTKEY),
        ],
        rows=[_overview(), _allocation(), _gpus(), _agreement(), _integrity(), _validators()],
    )
