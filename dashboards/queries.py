"""Every PromQL expression the dashboards use, apart from panel layout.

Public UPPER_CASE string constants are queries (``VAR_*`` are template-variable queries);
``_UPPER`` names are fragments. ``all_queries()`` lists them, and a test checks that every
panel target of every dashboard is one of them and that each parses in a real Prometheus after
:func:`grafana_to_promql` has replaced the Grafana variables.

Selector conventions (grafana/dashboard-linter): every target carries ``job`` and ``instance``
matchers driven by the ``$job``/``$instance`` variables; ranges in ``rate``/``increase`` use
``$__rate_interval``. Metric names are those of ``docs/metrics-contract.md`` plus Prometheus'
own ``up``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from alerts import thresholds

# --- Fragments ------------------------------------------------------------------------------
_TARGET = 'job=~"$job",instance=~"$instance"'
_GPU = _TARGET + ',gpu=~"$gpu"'
_UID = _TARGET + ',uid=~"$uid"'
_RATE = "$__rate_interval"
# Clock-event reasons that are bookkeeping rather than a slowdown.
_BENIGN_CLOCK_REASONS = "gpu_idle|applications_clocks_setting|display_clock_setting"
# Our miners, replica-safe and independent of the miners' own exporters: declared to the network
# exporter (--network.our-hotkeys), or a scraped miner exporter's hotkey (alerts.builder.ours).
_OURS_MINER = (
    'max by (hotkey) (opencompute_network_our_hotkey_info or opencompute_identity_info{role="miner"})'
)


def _increase(selector: str) -> str:
    """Events in the last ``$__rate_interval``, a counter's first event included.

    ``increase()`` needs two samples, so a series that appears at 1 (the first XID of a GPU, the
    first failed publish) would show 0 until it changes again. A series that did not exist one
    interval ago counts with its whole value instead. Works on Prometheus 2.42 (no
    created-timestamp support needed).
    """
    return f"(({selector} unless {selector} offset {_RATE}) or increase({selector}[{_RATE}]))"


# --- Template variables -----------------------------------------------------------------------
VAR_MINER_JOB = 'label_values(opencompute_exporter_build_info{exporter="miner"}, job)'
VAR_MINER_HOTKEY = 'label_values(opencompute_identity_info{role="miner",job=~"$job"}, hotkey)'
VAR_MINER_INSTANCE = (
    'label_values(opencompute_identity_info{role="miner",job=~"$job",hotkey=~"$hotkey"}, instance)'
)
VAR_MINER_GPU = f"label_values(opencompute_gpu_info{{{_TARGET}}}, gpu)"
VAR_VALIDATOR_JOB = 'label_values(opencompute_exporter_build_info{exporter="validator"}, job)'
VAR_VALIDATOR_HOTKEY = 'label_values(opencompute_identity_info{role="validator",job=~"$job"}, hotkey)'
VAR_VALIDATOR_INSTANCE = (
    'label_values(opencompute_identity_info{role="validator",job=~"$job",hotkey=~"$hotkey"}, instance)'
)
VAR_VALIDATOR_UID = f"label_values(opencompute_validator_miner_info{{{_TARGET}}}, uid)"
VAR_NETWORK_JOB = 'label_values(opencompute_exporter_build_info{exporter="network"}, job)'
VAR_NETWORK_INSTANCE = (
    'label_values(opencompute_exporter_build_info{exporter="network",job=~"$job"}, instance)'
)
VAR_NETWORK_HOTKEY = f"label_values(opencompute_network_stats_info{{{_TARGET}}}, hotkey)"
VAR_EXPORTER_JOB = "label_values(opencompute_exporter_build_info, job)"
VAR_EXPORTER_INSTANCE = 'label_values(opencompute_exporter_build_info{job=~"$job"}, instance)'

# --- Miner GPUs -------------------------------------------------------------------------------
MINER_GPU_COUNT = f"sum(opencompute_gpus{{{_TARGET}}})"
MINER_GPUS_LOST = f"count(opencompute_gpu_up{{{_TARGET}}} == 0) or vector(0)"
MINER_NVML_UP = f"min(opencompute_gpu_nvml_up{{{_TARGET}}})"
MINER_ALLOCATED_NOW = f"max(opencompute_miner_allocated{{{_TARGET}}})"
MINER_PORT_OPEN_NOW = f"min(opencompute_miner_port_open{{{_TARGET}}})"
MINER_POWER_TOTAL = f"sum(opencompute_gpu_power_usage_watts{{{_TARGET}}})"
GPU_UTILIZATION = f"opencompute_gpu_utilization_ratio{{{_GPU}}}"
GPU_MEMORY_UTILIZATION = f"opencompute_gpu_memory_utilization_ratio{{{_GPU}}}"
GPU_MEMORY_USED = f"opencompute_gpu_memory_used_bytes{{{_GPU}}}"
GPU_MEMORY_TOTAL = f"opencompute_gpu_memory_total_bytes{{{_GPU}}}"
GPU_TEMPERATURE = f"opencompute_gpu_temperature_celsius{{{_GPU}}}"
GPU_POWER_USAGE = f"opencompute_gpu_power_usage_watts{{{_GPU}}}"
GPU_POWER_LIMIT = f"opencompute_gpu_power_limit_watts{{{_GPU}}}"
GPU_ENERGY_RATE = f"rate(opencompute_gpu_energy_consumption_joules_total{{{_GPU}}}[{_RATE}])"
GPU_SM_CLOCK = f"opencompute_gpu_sm_clock_hz{{{_GPU}}}"
GPU_MEMORY_CLOCK = f"opencompute_gpu_memory_clock_hz{{{_GPU}}}"
GPU_FAN_SPEED = f"opencompute_gpu_fan_speed_ratio{{{_GPU}}}"
GPU_PERFORMANCE_STATE = f"opencompute_gpu_performance_state{{{_GPU}}}"
GPU_CLOCK_EVENT_REASONS = (
    f'opencompute_gpu_clock_event_reason_active{{{_GPU},reason!~"{_BENIGN_CLOCK_REASONS}"}}'
)
GPU_UP = f"opencompute_gpu_up{{{_GPU}}}"
GPU_XID_INCREASE = f"sum by (instance, gpu, xid) {_increase(f'opencompute_gpu_xid_errors_total{{{_GPU}}}')}"
GPU_XID_TOTALS = f"sum by (instance, gpu, xid) (opencompute_gpu_xid_errors_total{{{_GPU}}})"
GPU_ECC_INCREASE = f"sum by (instance, gpu, type) {_increase(f'opencompute_gpu_ecc_errors_total{{{_GPU}}}')}"
GPU_REMAPPED_ROWS = f"opencompute_gpu_remapped_rows{{{_GPU}}}"
GPU_RETIRED_PAGES = f"opencompute_gpu_retired_pages{{{_GPU}}}"
GPU_RESET_PENDING = (
    f"max by (instance, gpu) (opencompute_gpu_remapped_rows_pending{{{_GPU}}} "
    f"or opencompute_gpu_retired_pages_pending{{{_GPU}}})"
)
GPU_INVENTORY = f"opencompute_gpu_info{{{_GPU}}}"
MINER_ALLOCATED = f"opencompute_miner_allocated{{{_TARGET}}}"
MINER_PORT_OPEN = f"opencompute_miner_port_open{{{_TARGET}}}"
MINER_ALLOCATION_INFO = f"opencompute_miner_allocation_info{{{_TARGET}}}"
MINER_PORT_CHECK_AGE = f"time() - opencompute_miner_port_check_timestamp_seconds{{{_TARGET}}}"
MINER_SPEC_GPU_MODELS = f"opencompute_miner_spec_model_gpus{{{_TARGET}}}"

# --- Miner GPU workloads (workload collector) ---------------------------------------------------
_FOREIGN = 'workload=~"other_container|host|unknown"'
MINER_RENTAL_GPUS_NOW = (
    f'count(sum by (instance, gpu) (opencompute_gpu_processes{{{_GPU},workload="rental"}}) > 0) or vector(0)'
)
MINER_FOREIGN_GPUS_NOW = (
    f"count(sum by (instance, gpu) (opencompute_gpu_processes{{{_GPU},{_FOREIGN}}}) > 0) or vector(0)"
)
GPU_PROCESSES_BY_WORKLOAD = f"sum by (instance, gpu, workload) (opencompute_gpu_processes{{{_GPU}}}) > 0"
GPU_PROCESS_MEMORY_BY_WORKLOAD = (
    f"sum by (instance, gpu, workload) (opencompute_gpu_process_memory_used_bytes{{{_GPU}}})"
)
GPU_PROCESS_UTILIZATION_BY_WORKLOAD = (
    f"sum by (instance, gpu, workload) (opencompute_gpu_process_utilization_ratio{{{_GPU}}})"
)
MINER_CONTAINERS_BY_WORKLOAD = f"max by (instance, workload) (opencompute_miner_containers{{{_TARGET}}})"
MINER_ATTRIBUTION_PROBLEMS = (
    f"max by (instance, reason) (opencompute_gpu_process_attribution_problem{{{_TARGET}}})"
)
MINER_DOCKER_UP = f"opencompute_miner_docker_up{{{_TARGET}}}"

# --- Validator PoG ----------------------------------------------------------------------------
VALIDATOR_DB_UP = f"min(opencompute_validator_db_up{{{_TARGET}}})"
VALIDATOR_MINERS_BY_STATE = f"max by (state) (opencompute_validator_miners{{{_TARGET}}})"
VALIDATOR_ALLOCATED_AND_PENALIZED = (
    f'max by (state) (opencompute_validator_miners{{{_TARGET},state=~"allocated|penalized"}})'
)
VALIDATOR_NEWEST_POG_AGE = f"time() - max(opencompute_validator_pog_last_timestamp_seconds{{{_TARGET}}})"
VALIDATOR_CHALLENGE_SUCCESS_RATIO = (
    f'sum(opencompute_validator_challenges{{{_TARGET},result="success"}}) '
    f"/ sum(opencompute_validator_challenges{{{_TARGET}}})"
)
VALIDATOR_MINER_SCORE = f"max by (instance, uid) (opencompute_validator_miner_score{{{_UID}}})"
VALIDATOR_POG_AGE = (
    f"time() - max by (instance, uid) (opencompute_validator_pog_last_timestamp_seconds{{{_UID}}})"
)
VALIDATOR_POG_SUCCESS_AGE = (
    f"time() - max by (instance, uid) (opencompute_validator_pog_last_success_timestamp_seconds{{{_UID}}})"
)
VALIDATOR_POG_GPU_COUNT = f"max by (instance, uid) (opencompute_validator_pog_gpus{{{_UID}}})"
VALIDATOR_POG_GPU_INFO = f"opencompute_validator_pog_gpu_info{{{_UID}}}"
VALIDATOR_POG_HISTORY_ROWS = f"opencompute_validator_pog_history_rows{{{_UID}}}"
VALIDATOR_CHALLENGE_SUCCESS_BY_MINER = (
    f'sum by (instance, uid) (opencompute_validator_challenges{{{_UID},result="success"}}) '
    f"/ sum by (instance, uid) (opencompute_validator_challenges{{{_UID}}})"
)
VALIDATOR_CHALLENGE_ELAPSED = f"opencompute_validator_challenge_elapsed_seconds_avg{{{_UID}}}"
VALIDATOR_MINER_ALLOCATED = f"max by (instance, uid) (opencompute_validator_miner_allocated{{{_UID}}})"
VALIDATOR_INFLATED_SCORES = f"sum(opencompute_validator_miner_score_inflated{{{_TARGET}}})"
VALIDATOR_DB_ERRORS = (
    f"sum by (instance, reason) {_increase(f'opencompute_validator_db_errors_total{{{_TARGET}}}')}"
)

# --- Network ----------------------------------------------------------------------------------
NETWORK_MINERS_ALLOCATED = f"max(opencompute_network_miners_allocated{{{_TARGET}}})"
NETWORK_MINERS_PENALIZED = f"max(opencompute_network_miners_penalized{{{_TARGET}}})"
NETWORK_MINERS_PENALTY_ENFORCED = f"max(opencompute_network_miners_penalty_enforced{{{_TARGET}}})"
NETWORK_PENALTY_AUTHORITY_SEEN = f"max(opencompute_network_penalty_authority_seen{{{_TARGET}}})"
NETWORK_TRUSTED_VALIDATORS = f"sum(max by (hotkey) (opencompute_network_validator_trusted{{{_TARGET}}}))"
NETWORK_TRUST_SOURCE = f"max by (source) (opencompute_network_trust_source_info{{{_TARGET}}})"
NETWORK_V1_ONLY_SHARE = (
    f'sum(max by (role) (opencompute_network_runs{{{_TARGET},signature="v1_only"}})) '
    f"/ sum(max by (role, signature) (opencompute_network_runs{{{_TARGET}}}))"
)
# Per role the freshest replica's snapshot, then the oldest role.
NETWORK_SNAPSHOT_AGE = (
    f"time() - min(max by (role) (opencompute_network_last_refresh_timestamp_seconds{{{_TARGET}}}))"
)
NETWORK_OUR_MINERS_PENALTY_ENFORCED = (
    f"count(max by (hotkey) (opencompute_network_miner_penalty_enforced{{{_TARGET}}}) "
    f"* on (hotkey) group_left () {_OURS_MINER}) or vector(0)"
)
NETWORK_OUR_MINERS_LISTED_NOT_ENFORCED = (
    f"count((max by (hotkey) (opencompute_network_miner_penalized{{{_TARGET}}}) "
    f"unless on (hotkey) opencompute_network_miner_penalty_enforced{{{_TARGET}}}) "
    f"* on (hotkey) group_left () {_OURS_MINER}) or vector(0)"
)
NETWORK_OUR_MINERS_ALLOCATED = (
    f"count(max by (hotkey) (opencompute_network_miner_allocated{{{_TARGET}}}) "
    f"* on (hotkey) group_left () {_OURS_MINER}) or vector(0)"
)
NETWORK_ALLOCATED_OVER_TIME = f"max(opencompute_network_miners_allocated{{{_TARGET}}})"
NETWORK_PENALIZED_OVER_TIME = f"max(opencompute_network_miners_penalized{{{_TARGET}}})"
NETWORK_PENALTY_ENFORCED_OVER_TIME = f"max(opencompute_network_miners_penalty_enforced{{{_TARGET}}})"
NETWORK_PENALIZED_MINERS = (
    f'max by (hotkey, list, status_code) (opencompute_network_miner_penalized{{{_TARGET},hotkey=~"$hotkey"}})'
)
NETWORK_ALLOCATION_CLAIMS = (
    f'max by (hotkey) (opencompute_network_miner_allocation_claims{{{_TARGET},hotkey=~"$hotkey"}})'
)
NETWORK_ALLOCATED_UNREGISTERED = (
    f"sum(max by (hotkey) (opencompute_network_miner_allocated_unregistered{{{_TARGET}}})) or vector(0)"
)
NETWORK_POG_GPUS_BY_MODEL = (
    f"sum by (gpu_name) (max by (uid) (opencompute_network_stats_gpus{{{_TARGET}}}) "
    f"* on (uid) group_left (gpu_name) max by (uid, gpu_name) (opencompute_network_stats_info{{{_TARGET}}}))"
)
NETWORK_CLAIMED_GPUS_BY_MODEL = (
    f"sum by (gpu_name) (max by (uid, hotkey) (opencompute_network_miner_spec_gpus{{{_TARGET}}}) "
    f"* on (uid, hotkey) group_left (gpu_name) "
    f"max by (uid, hotkey, gpu_name) (opencompute_network_miner_spec_info{{{_TARGET}}}))"
)
NETWORK_MINERS_BY_MODEL = (
    f"count by (gpu_name) (max by (uid, gpu_name) (opencompute_network_stats_info{{{_TARGET}}}))"
)
NETWORK_AGREEMENT_RATIO = (
    f"sum(max by (uid) (opencompute_network_stats_agreeing_validators{{{_TARGET}}})) "
    f"/ sum(max by (uid) (opencompute_network_stats_reporting_validators{{{_TARGET}}}))"
)
NETWORK_LEAST_AGREEMENT = (
    f"bottomk(10, max by (uid) (opencompute_network_stats_agreeing_validators{{{_TARGET}}}) "
    f"/ max by (uid) (opencompute_network_stats_reporting_validators{{{_TARGET}}}))"
)
NETWORK_SCORE_SPREAD_TOP = f"topk(10, max by (uid) (opencompute_network_stats_score_spread{{{_TARGET}}}))"
NETWORK_MINER_SCORES = (
    f"max by (uid, hotkey, gpu_name) (opencompute_network_stats_score{{{_TARGET}}} "
    f"* on (job, instance, uid) group_left (hotkey, gpu_name) "
    f'opencompute_network_stats_info{{{_TARGET},hotkey=~"$hotkey"}})'
)
NETWORK_CLAIM_MISMATCHES = (
    f"max by (uid, hotkey, field) "
    f'(opencompute_network_miner_claim_mismatch{{{_TARGET},hotkey=~"$hotkey"}}) == 1'
)
# Replica-safe: every network exporter replica reads the same store, so per-series values are
# the same on each; `max by` the series' own labels counts each once (a `sum` would double).
NETWORK_RUNS_BY_SIGNATURE = f"max by (role, signature) (opencompute_network_runs{{{_TARGET}}})"
NETWORK_RUNS_REJECTED = f"max by (role, reason) (opencompute_network_runs_rejected{{{_TARGET}}})"
# Each replica counts the same rejections: the most any replica counted, first ones included.
NETWORK_REJECTION_RATE = (
    f"max by (role, reason) {_increase(f'opencompute_network_run_rejections_total{{{_TARGET}}}')}"
)
NETWORK_RUNS_STALE = f"max by (role) (opencompute_network_runs_stale{{{_TARGET}}})"
NETWORK_BAD_INPUT_RATE = f"max by (reason) {_increase(f'opencompute_network_bad_input_total{{{_TARGET}}}')}"
NETWORK_VALIDATOR_UPDATE_AGE = (
    f"(time() - max by (hotkey) (opencompute_network_validator_last_update_timestamp_seconds{{{_TARGET}}})) "
    f"and on (hotkey) (max by (hotkey) (opencompute_network_validator_trusted{{{_TARGET}}}) == 1)"
)
NETWORK_STALE_VALIDATORS = (
    "count(((time() - max by (hotkey) "
    f"(opencompute_network_validator_last_update_timestamp_seconds{{{_TARGET}}})) "
    f"> {thresholds.VALIDATOR_STALE_SECONDS}) "
    f"and on (hotkey) (max by (hotkey) (opencompute_network_validator_trusted{{{_TARGET}}}) == 1)) "
    "or vector(0)"
)
NETWORK_VALIDATORS_TRUSTED = f"max by (hotkey) (opencompute_network_validator_trusted{{{_TARGET}}})"

# --- Exporter health --------------------------------------------------------------------------
EXPORTER_TARGETS_UP = f"sum(up{{{_TARGET}}})"
EXPORTER_TARGETS_DOWN = f"count(up{{{_TARGET}}} == 0) or vector(0)"
EXPORTER_UP = f"up{{{_TARGET}}}"
EXPORTER_BUILD_INFO = f"opencompute_exporter_build_info{{{_TARGET}}}"
EXPORTER_FAILING_COLLECTORS = f"count(opencompute_scrape_collector_success{{{_TARGET}}} == 0) or vector(0)"
EXPORTER_COLLECTOR_SUCCESS = f"opencompute_scrape_collector_success{{{_TARGET}}}"
EXPORTER_COLLECTOR_DURATION = f"opencompute_scrape_collector_duration_seconds{{{_TARGET}}}"
EXPORTER_REFRESH_AGE = f"time() - opencompute_network_last_refresh_timestamp_seconds{{{_TARGET}}}"
EXPORTER_REFRESH_DURATION = f"opencompute_network_refresh_duration_seconds{{{_TARGET}}}"
EXPORTER_REFRESH_SUCCESS = f"opencompute_network_refresh_success{{{_TARGET}}}"
EXPORTER_OUTBOX_ENTRIES = f"opencompute_publish_outbox_entries{{{_TARGET}}}"
EXPORTER_PUBLISH_ATTEMPT_RATE = (
    f"sum by (instance) {_increase(f'opencompute_publish_attempts_total{{{_TARGET}}}')}"
)
EXPORTER_PUBLISH_FAILURE_RATE = (
    f"sum by (instance, reason) {_increase(f'opencompute_publish_failures_total{{{_TARGET}}}')}"
)
EXPORTER_PUBLISH_AGE = f"time() - opencompute_publish_last_success_timestamp_seconds{{{_TARGET}}}"
EXPORTER_PUBLISH_SEQUENCE = f"opencompute_publish_sequence{{{_TARGET}}}"
EXPORTER_STATE_STORE = f"opencompute_state_store_info{{{_TARGET}}}"
EXPORTER_STATE_STORE_REQUEST_RATE = (
    "sum by (instance, backend, operation) "
    f"(rate(opencompute_state_store_requests_total{{{_TARGET}}}[{_RATE}]))"
)
EXPORTER_NVML_UP = f"opencompute_gpu_nvml_up{{{_TARGET}}}"
EXPORTER_NVML_ERROR_RATE = (
    f"sum by (instance, reason) {_increase(f'opencompute_gpu_nvml_errors_total{{{_TARGET}}}')}"
)
EXPORTER_NVML_INFO = f"opencompute_gpu_nvml_info{{{_TARGET}}}"
EXPORTER_VALIDATOR_DB_UP = f"opencompute_validator_db_up{{{_TARGET}}}"
EXPORTER_REGISTRAR_SUCCESS_AGE = f"time() - opencompute_registrar_last_success_timestamp_seconds{{{_TARGET}}}"
EXPORTER_REGISTRAR_ATTEMPT_RATE = (
    f"sum by (instance, outcome) (rate(opencompute_registrar_attempts_total{{{_TARGET}}}[{_RATE}]))"
)
EXPORTER_REGISTRAR_ONCHAIN_VERSION = f"opencompute_registrar_onchain_version{{{_TARGET}}}"
EXPORTER_REGISTRAR_OWNER = f"opencompute_registrar_record_owner{{{_TARGET}}}"
EXPORTER_REGISTRAR_SERVES = (
    f"sum by (instance, cause) (increase(opencompute_registrar_serves_total{{{_TARGET}}}[{_RATE}]))"
)
EXPORTER_REGISTRAR_OTHER_SERVES = (
    f"sum by (instance, by) (increase(opencompute_registrar_record_changes_total{{{_TARGET}}}[{_RATE}]))"
)
EXPORTER_REGISTRAR_ADDRESS = f"opencompute_registrar_onchain_address_info{{{_TARGET}}}"
EXPORTER_REGISTRAR_PORT = f"opencompute_registrar_onchain_port{{{_TARGET}}}"


# --- Subnet / chain (the network exporter's chain collector) -----------------------------------
# "Ours" = hotkeys the network exporter declares (opencompute_network_our_hotkey_info), de-duplicated
# across replicas; per-uid chain series are reduced to (hotkey, uid) first for the same reason.
_OURS_DECLARED = f"max by (hotkey) (opencompute_network_our_hotkey_info{{{_TARGET}}})"
_CHAIN_HOTKEY = _TARGET + ',hotkey=~"$hotkey"'


def _our_chain(metric: str) -> str:
    return f"max by (hotkey, uid) ({metric}{{{_CHAIN_HOTKEY}}}) * on (hotkey) group_left () {_OURS_DECLARED}"


def _chain_of_identity(metric: str, role: str) -> str:
    """A chain series (from any network exporter) for the hotkeys of the miner/validator dashboard's
    selected instances: the ``$job``/``$instance`` matchers sit on the identity side of the join."""
    identity = f'opencompute_identity_info{{role="{role}",{_TARGET},hotkey=~"$hotkey"}}'
    return f"max by (hotkey, uid) ({metric}) * on (hotkey) group_left () max by (hotkey) ({identity})"


VAR_CHAIN_HOTKEY = f"label_values(opencompute_chain_neuron_info{{{_TARGET}}}, hotkey)"
CHAIN_BLOCK = f"max(opencompute_chain_block{{{_TARGET}}})"
CHAIN_TEMPO = f"max(opencompute_chain_tempo_blocks{{{_TARGET}}})"
CHAIN_IMMUNITY_PERIOD = f"max(opencompute_chain_immunity_period_blocks{{{_TARGET}}})"
CHAIN_NEURONS = f"max(opencompute_chain_neurons{{{_TARGET}}})"
CHAIN_VIEW_AGE = f"time() - max(opencompute_chain_last_success_timestamp_seconds{{{_TARGET}}})"
CHAIN_OURS_REGISTERED = (
    f"count(max by (hotkey) (opencompute_chain_neuron_info{{{_TARGET}}}) "
    f"* on (hotkey) group_left () {_OURS_DECLARED}) or vector(0)"
)
CHAIN_READ_FAILURES = (
    f"sum by (reason) (increase(opencompute_chain_read_failures_total{{{_TARGET}}}[{_RATE}]))"
)
CHAIN_DECODE_ERRORS = f"sum(increase(opencompute_chain_neuron_decode_errors_total{{{_TARGET}}}[{_RATE}]))"
CHAIN_OUR_EMISSION = _our_chain("opencompute_chain_neuron_epoch_emission_alpha")
CHAIN_OUR_INCENTIVE = _our_chain("opencompute_chain_neuron_incentive_ratio")
CHAIN_OUR_TRUST = _our_chain("opencompute_chain_neuron_trust_ratio")
CHAIN_OUR_CONSENSUS = _our_chain("opencompute_chain_neuron_consensus_ratio")
CHAIN_OUR_MINER_POSITION = f"({_our_chain('opencompute_chain_neuron_miner_position')}) > 0"
CHAIN_OUR_STAKE = _our_chain("opencompute_chain_neuron_stake_alpha")
CHAIN_OUR_PRUNING_SCORE = _our_chain("opencompute_chain_neuron_pruning_score_ratio")
CHAIN_OUR_IMMUNE = _our_chain("opencompute_chain_neuron_immune")
CHAIN_OUR_VALIDATOR_TRUST = (
    f"({_our_chain('opencompute_chain_neuron_validator_trust_ratio')}) "
    f"and on (hotkey, uid) max by (hotkey, uid) (opencompute_chain_neuron_validator_permit{{{_TARGET}}} == 1)"
)
CHAIN_OUR_WEIGHTS_LAG = (
    f"({_our_chain('opencompute_chain_neuron_blocks_since_last_update')}) "
    f"and on (hotkey, uid) max by (hotkey, uid) (opencompute_chain_neuron_validator_permit{{{_TARGET}}} == 1)"
)
CHAIN_TOP_EMISSION = (
    f"topk(10, max by (uid, hotkey) (opencompute_chain_neuron_epoch_emission_alpha{{{_TARGET}}}))"
)
CHAIN_SUBNET_EMISSION = (
    f"sum(max by (uid, hotkey) (opencompute_chain_neuron_epoch_emission_alpha{{{_TARGET}}}))"
)
CHAIN_SUBNET_VALIDATORS = (
    f"sum(max by (uid, hotkey) (opencompute_chain_neuron_validator_permit{{{_TARGET}}}))"
)
CHAIN_SUBNET_IMMUNE = f"sum(max by (uid, hotkey) (opencompute_chain_neuron_immune{{{_TARGET}}}))"
CHAIN_NEURONS_TABLE = f"max by (uid, hotkey, coldkey) (opencompute_chain_neuron_info{{{_CHAIN_HOTKEY}}})"
CHAIN_NEURONS_TABLE_STAKE = f"max by (uid, hotkey) (opencompute_chain_neuron_stake_alpha{{{_CHAIN_HOTKEY}}})"
CHAIN_NEURONS_TABLE_EMISSION = (
    f"max by (uid, hotkey) (opencompute_chain_neuron_epoch_emission_alpha{{{_CHAIN_HOTKEY}}})"
)
CHAIN_NEURONS_TABLE_INCENTIVE = (
    f"max by (uid, hotkey) (opencompute_chain_neuron_incentive_ratio{{{_CHAIN_HOTKEY}}})"
)
CHAIN_NEURONS_TABLE_LAG = (
    f"max by (uid, hotkey) (opencompute_chain_neuron_blocks_since_last_update{{{_CHAIN_HOTKEY}}})"
)
CHAIN_NEURONS_TABLE_PRUNING = (
    f"max by (uid, hotkey) (opencompute_chain_neuron_pruning_score_ratio{{{_CHAIN_HOTKEY}}})"
)
MINER_CHAIN_EMISSION = _chain_of_identity("opencompute_chain_neuron_epoch_emission_alpha", "miner")
MINER_CHAIN_INCENTIVE = _chain_of_identity("opencompute_chain_neuron_incentive_ratio", "miner")
MINER_CHAIN_POSITION = f"({_chain_of_identity('opencompute_chain_neuron_miner_position', 'miner')}) > 0"
MINER_CHAIN_PRUNING_SCORE = _chain_of_identity("opencompute_chain_neuron_pruning_score_ratio", "miner")
VALIDATOR_CHAIN_WEIGHTS_LAG = _chain_of_identity(
    "opencompute_chain_neuron_blocks_since_last_update", "validator"
)
VALIDATOR_CHAIN_VALIDATOR_TRUST = _chain_of_identity(
    "opencompute_chain_neuron_validator_trust_ratio", "validator"
)
VALIDATOR_CHAIN_DIVIDENDS = _chain_of_identity("opencompute_chain_neuron_dividends_ratio", "validator")
VALIDATOR_CHAIN_EMISSION = _chain_of_identity("opencompute_chain_neuron_epoch_emission_alpha", "validator")


def all_queries() -> dict[str, str]:
    """Every public query constant of this module, by name (the allow-list for panel targets)."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }


# --- Grafana variables -> plain PromQL -----------------------------------------------------------
# What Grafana substitutes for its built-in interval variables; values a Prometheus accepts.
GRAFANA_BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
# A concrete value for each dashboard variable: regexes, since every matcher on them is `=~`.
DEFAULT_VARIABLES: dict[str, str] = {
    "datasource": "prometheus",
    "job": ".+",
    "instance": ".+",
    "hotkey": ".+",
    "gpu": ".+",
    "uid": ".+",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<selector>.*),\s*)?(?P<label>\w+)\s*\)\s*$", re.S)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.S)


def grafana_to_promql(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """Replace Grafana variables (``$x``, ``${x}``, ``${x:fmt}``, ``[[x]]``) with concrete values.

    Lets a test (or the demo) send a dashboard query to a real Prometheus. ``variables``
    override :data:`DEFAULT_VARIABLES`; an unknown variable raises ``KeyError`` rather than
    leaving a ``$`` that would make a confusing parse error.
    """
    values = {**GRAFANA_BUILTINS, **DEFAULT_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in values:
            raise KeyError(f"unknown Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def variable_query_to_promql(query: str) -> str:
    """The PromQL behind a Grafana Prometheus variable query (``label_values``/``query_result``).

    ``label_values(m{...}, label)`` asks Prometheus for the series ``m{...}``;
    ``label_values(label)`` for any series. Plain expressions pass through.
    """
    match = _LABEL_VALUES.match(query)
    if match:
        selector = match.group("selector")
        return selector.strip() if selector else '{__name__=~".+"}'
    match = _QUERY_RESULT.match(query)
    if match:
        return match.group("expr").strip()
    return query
