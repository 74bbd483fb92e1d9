"""Every threshold, window and ``for:`` duration the alerts use, in one place.

Like a monitoring mixin's ``_config``: the alert modules only interpolate these values, so an
operator who wants different limits edits this file (or overrides it before calling
``alerts.build_rule_groups()``) and regenerates. Durations are Prometheus duration strings;
values compared against ``*_seconds`` metrics are plain seconds.

Cadences these are sized against (from the original subnet code): a validator runs a
proof-of-GPU round every ~360 blocks (~72 min, plus up to 15 min random delay), syncs scores
every ~100 blocks (~20 min); a miner republishes its specs every ~150 blocks (~30 min).
"""

from __future__ import annotations

# --- Which Prometheus jobs are ours -------------------------------------------------------
# Regex over the `job` label of the exporter scrape jobs (deploy/ names them opencompute-*).
EXPORTER_JOB_REGEX = "opencompute.*"

# --- Exporter targets and collectors ------------------------------------------------------
TARGET_DOWN_FOR = "5m"
TARGET_ABSENT_FOR = "15m"
COLLECTOR_FAILING_FOR = "10m"
# Prometheus' default scrape_timeout is 10 s; warn well before a collector eats it.
COLLECTOR_SLOW_SECONDS = 5
COLLECTOR_SLOW_FOR = "15m"

# --- Publishing (miner and validator exporters) -------------------------------------------
# Pending entries in the durable outbox above which a still-growing backlog is worth a look.
OUTBOX_BACKLOG_ENTRIES = 10
OUTBOX_GROWTH_WINDOW = "30m"
OUTBOX_GROWING_FOR = "30m"
# Specs/scores are republished every 20-30 minutes; four missed rounds is a problem.
PUBLISH_STALE_SECONDS = 2 * 3600
PUBLISH_STALE_FOR = "15m"

# --- GPUs (miner exporter) ----------------------------------------------------------------
NVML_DOWN_FOR = "2m"
GPU_LOST_FOR = "1m"
# A drop in the visible GPU count against the most seen in this window is reported.
GPU_COUNT_LOOKBACK = "6h"
GPU_COUNT_DROPPED_FOR = "5m"
# XIDs that mean the GPU or its memory needs attention (NVIDIA XID catalogue): 48 double-bit
# ECC, 63/64 row-remapping event/failure, 74 NVLink, 79 fell off the bus, 92 high single-bit
# ECC rate, 94/95 contained/uncontained ECC error.
CRITICAL_XIDS: tuple[int, ...] = (48, 63, 64, 74, 79, 92, 94, 95)
# An XID counts as "recent" for this long after it was last seen.
XID_RECENT_SECONDS = 15 * 60
XID_WINDOW = "15m"
ECC_WINDOW = "15m"
GPU_TEMPERATURE_CELSIUS = 85
GPU_TEMPERATURE_FOR = "10m"
THERMAL_THROTTLE_REASONS: tuple[str, ...] = ("sw_thermal_slowdown", "hw_thermal_slowdown")
# sw_power_cap is the normal state of a GPU at full load; these two are not.
POWER_THROTTLE_REASONS: tuple[str, ...] = ("hw_power_brake_slowdown", "hw_slowdown")
THROTTLE_FOR = "10m"
GPU_RESET_REQUIRED_FOR = "5m"
ROW_REMAP_FAILURE_FOR = "1m"

# --- Miner state ----------------------------------------------------------------------------
MINER_PORT_CLOSED_FOR = "10m"
# Penalties the validators enforce (a penalty authority's checklist) page; other validators'
# lists are informational (the original validator ignores them) and only warn, after longer.
MINER_PENALIZED_FOR = "5m"
MINER_LISTED_AS_PENALIZED_FOR = "15m"
# A miner of ours that was allocated at any time in this window and is not now has lost it.
ALLOCATION_LOST_WINDOW = "1h"
ALLOCATION_LOST_FOR = "10m"
CLAIM_MISMATCH_FOR = "30m"

# --- Validator exporter ---------------------------------------------------------------------
# Newest proof-of-GPU row older than ~2.5 rounds.
POG_STALE_SECONDS = 3 * 3600
POG_STALE_FOR = "15m"
VALIDATOR_DB_DOWN_FOR = "5m"
CHALLENGE_SUCCESS_RATIO_MIN = 0.5
# Below this many recorded challenges the ratio is too noisy to alert on.
CHALLENGE_MIN_COUNT = 20
CHALLENGE_SUCCESS_LOW_FOR = "30m"
# v1.9.0 has no challenge_details writer: rows left by older versions are frozen, and a ratio over
# them says nothing about the validator now. Only a table written to within this long counts.
CHALLENGE_RECENT_SECONDS = 6 * 3600

# --- Which hotkeys are ours (network exporter's --network.our-hotkeys) ---------------------
# A scraped exporter's hotkey missing from the declared list; long enough to ride out a rollout
# that updates the exporters before the network exporter's flags.
OUR_HOTKEY_UNDECLARED_FOR = "30m"

# --- Network exporter -----------------------------------------------------------------------
# A trusted validator's run not updated for this long (it syncs every ~20 minutes).
VALIDATOR_STALE_SECONDS = 2 * 3600
VALIDATOR_STALE_FOR = "15m"
# Rejection reasons (exporters/core/signing.py REJECT_REASONS) that mean forged or altered data,
# as opposed to stale, unregistered or merely unsigned runs, which are routine.
TAMPER_REJECT_REASONS: tuple[str, ...] = ("wrong_signature", "tampered", "replayed_seq", "bad_hex")
# New rejections within this window alert; the alert clears when none were added for this long.
RUNS_REJECTED_WINDOW = "1h"
# Share of runs (per role) carrying only the legacy v1 signature.
V1_ONLY_RATIO = 0.5
V1_ONLY_FOR = "1h"
# Validator runs refresh every 5 minutes, miner runs every 30 (--network.*-refresh-interval): a
# snapshot counts as stale after about six validator or three miner intervals, so one failed or
# slow attempt (WandB rate limits happen) does not alert on its own.
NETWORK_REFRESH_STALE_SECONDS = 30 * 60
NETWORK_MINER_REFRESH_STALE_SECONDS = 90 * 60
NETWORK_REFRESH_STALE_FOR = "5m"
NETWORK_REFRESH_FAILING_FOR = "15m"
# A failing refresh alerts only after this many failed attempts within the window (the latest
# included): a single failed miner refresh leaves refresh_success at 0 for a whole 30-minute
# interval, which alone would outlast NETWORK_REFRESH_FAILING_FOR.
NETWORK_REFRESH_FAILURES_MIN = 2
NETWORK_REFRESH_FAILURES_WINDOW = "1h"
# Trust sources that leave the verified view without a trust anchor.
DEGRADED_TRUST_SOURCES: tuple[str, ...] = ("none",)
TRUST_DEGRADED_FOR = "10m"


# --- The chain (network exporter's chain collector, exporters/network/chain.py) ------------
# The chain view is re-read every 5 minutes (--network.chain-refresh-interval); six missed reads
# make it stale. The "ours" chain alerts only judge absence against a view at most this old.
CHAIN_STALE_SECONDS = 30 * 60
CHAIN_STALE_FOR = "10m"
# A hotkey counts as deregistered when it is missing from a fresh view but was registered
# within this lookback (so hotkeys of a coldkey that were never on the subnet do not alert).
# The alert resolves after this long: deregistration is final, and the runbook says what to do.
CHAIN_DEREGISTERED_LOOKBACK = "1d"
CHAIN_DEREGISTERED_FOR = "5m"
# A hotkey seen on two uids within this window has been deregistered and registered again.
CHAIN_UID_CHANGE_WINDOW = "1h"
# Pruning scores move once per epoch (a tempo: 360 blocks, ~72 min).
CHAIN_NEXT_TO_PRUNE_FOR = "30m"
# The original validator sets weights about every 100-150 blocks (weights_rate_limit 100 plus a
# proof-of-GPU round); two tempos without a weight-set means several rounds were missed, well
# before the chain's activity cutoff (5000 blocks on SN27) marks the validator inactive.
CHAIN_WEIGHTS_STALE_BLOCKS = 720
CHAIN_WEIGHTS_STALE_FOR = "15m"
# A permit or emission lost counts against the best value within this lookback.
CHAIN_LOST_LOOKBACK = "1d"
CHAIN_PERMIT_LOST_FOR = "10m"
# Emission is paid per epoch (~72 min); zero over most of one epoch is not a blip.
CHAIN_EMISSION_ZERO_FOR = "30m"


def regex_of(values: tuple[object, ...]) -> str:
    """``(48, 63)`` -> ``48|63``: a label-matcher regex for a fixed set of values."""
    return "|".join(str(v) for v in values)


# --- GPU workloads (miner exporter's workload collector) -----------------------------------
# Non-rental work on a GPU while the miner is not allocated: longer than the SN27 spec check's
# short docker run, shorter than the ~72 min between a validator's proof-of-GPU rounds.
GPU_BUSY_UNALLOCATED_FOR = "15m"
# Workloads that are neither the renter nor the SN27 miner's own checks.
FOREIGN_WORKLOADS: tuple[str, ...] = ("other_container", "host", "unknown")
# Allocated, yet no GPU has had a rental process for this long.
RENTAL_IDLE_FOR = "6h"
# The renter's container running while the network says "not allocated" (longer than a
# validator's test allocation).
RENTAL_WITHOUT_ALLOCATION_FOR = "30m"
# A reason that stopped attribution continuously over this window, then for this long.
ATTRIBUTION_PROBLEM_WINDOW = "15m"
ATTRIBUTION_PROBLEM_FOR = "15m"
# Reasons not alerted on here: NVML down has its own alert, MIG is a deliberate configuration.
ATTRIBUTION_PROBLEMS_NOT_ALERTED: tuple[str, ...] = ("nvml_unavailable", "mig")
