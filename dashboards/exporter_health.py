"""Exporter health: are the opencompute exporters themselves working?

Target up/down, per-collector success and duration (node_exporter style), the network
exporter's background refresh, the publishers' outbox, NVML, ComputeDb and the registrar's
on-chain record. No ``$hotkey`` variable here: the network exporter and registrar have no
identity to filter on.
"""

from __future__ import annotations

from grafanalib import core

from alerts import thresholds
from dashboards import house_style as hs
from dashboards import queries as q
from exporters import dashboard_uids as uids

UID = uids.EXPORTER_HEALTH
_COLLECTOR_LEGEND = "{{instance}} {{collector}}"


def _targets() -> hs.Row:
    return hs.Row(
        "Targets",
        [
            hs.stat(
                "Targets up",
                "short",
                [hs.target(q.EXPORTER_TARGETS_UP)],
                description="Exporter targets Prometheus scraped successfully (up == 1).",
            ),
            hs.stat(
                "Targets down",
                "short",
                [hs.target(q.EXPORTER_TARGETS_DOWN)],
                description="Exporter targets whose last scrape failed (up == 0).",
                thresholds=hs.steps(("green", None), ("red", 1)),
            ),
            hs.stat(
                "Failing collectors",
                "short",
                [hs.target(q.EXPORTER_FAILING_COLLECTORS)],
                description="Collectors that failed during the last scrape, across the selected targets.",
                thresholds=hs.steps(("green", None), ("orange", 1)),
            ),
            hs.table(
                "Exporters",
                "none",
                [hs.target(q.EXPORTER_BUILD_INFO, instant=True, table=True)],
                description="Exporter kind, version and Python version per target "
                "(opencompute_exporter_build_info).",
                hide=("Time", "__name__", "Value"),
            ),
            hs.state_timeline(
                "Scrape up",
                "none",
                [hs.target(q.EXPORTER_UP, "{{instance}}")],
                description="Prometheus' own up metric per exporter target.",
            ),
        ],
        height=6,
        widths=(3, 3, 3, 7, 8),
    )


def _collectors() -> hs.Row:
    return hs.Row(
        "Collectors",
        [
            hs.state_timeline(
                "Collector success",
                "none",
                [hs.target(q.EXPORTER_COLLECTOR_SUCCESS, _COLLECTOR_LEGEND)],
                description="Whether each collector succeeded in each scrape; a failing collector drops only "
                "its own metrics.",
            ),
            hs.timeseries(
                "Collector duration",
                "s",
                [hs.target(q.EXPORTER_COLLECTOR_DURATION, _COLLECTOR_LEGEND)],
                description="Time each collector took during the scrape; Prometheus times out at "
                "10 s by default.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.COLLECTOR_SLOW_SECONDS)),
            ),
        ],
    )


def _refresh() -> hs.Row:
    return hs.Row(
        "Network refresh",
        [
            hs.timeseries(
                "Refresh age",
                "s",
                [hs.target(q.EXPORTER_REFRESH_AGE, "{{instance}} {{role}}")],
                description="Age of the network exporter's cached snapshot per role; it refreshes in the "
                "background. The dashed line is the stale alert threshold.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.NETWORK_REFRESH_STALE_SECONDS)),
            ),
            hs.timeseries(
                "Refresh duration",
                "s",
                [hs.target(q.EXPORTER_REFRESH_DURATION, "{{instance}} {{role}}")],
                description="How long the last background refresh per role took.",
                min_value=0,
            ),
            hs.state_timeline(
                "Refresh success",
                "none",
                [hs.target(q.EXPORTER_REFRESH_SUCCESS, "{{instance}} {{role}}")],
                description="Whether the last background refresh per role succeeded.",
            ),
            hs.timeseries(
                "Skipped bad input",
                "short",
                [hs.target(q.NETWORK_BAD_INPUT_RATE, "{{reason}}")],
                description="Malformed run data the network exporter skipped per rate interval, by "
                "bounded reason (the first ones included).",
                min_value=0,
            ),
        ],
    )


def _publishing() -> hs.Row:
    return hs.Row(
        "Publishing and state store",
        [
            hs.timeseries(
                "Outbox depth",
                "short",
                [hs.target(q.EXPORTER_OUTBOX_ENTRIES, "{{instance}}")],
                description="Updates waiting in the durable outbox to be published; should drain to 0.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("orange", thresholds.OUTBOX_BACKLOG_ENTRIES)),
            ),
            hs.timeseries(
                "Publish attempts and failures",
                "short",
                [
                    hs.target(q.EXPORTER_PUBLISH_ATTEMPT_RATE, "{{instance}} attempts"),
                    hs.target(q.EXPORTER_PUBLISH_FAILURE_RATE, "{{instance}} failed: {{reason}}"),
                ],
                description="Publish attempts and failures per rate interval (the first failure "
                "included), failures by bounded reason.",
                min_value=0,
            ),
            hs.timeseries(
                "Time since last publish",
                "s",
                [hs.target(q.EXPORTER_PUBLISH_AGE, "{{instance}}")],
                description="Time since the last successful publish to the state store.",
                min_value=0,
                thresholds=hs.steps(("green", None), ("red", thresholds.PUBLISH_STALE_SECONDS)),
            ),
            hs.timeseries(
                "Publish sequence",
                "short",
                [hs.target(q.EXPORTER_PUBLISH_SEQUENCE, "{{instance}}")],
                description="Last v2 sequence number signed; it only goes up.",
            ),
            hs.timeseries(
                "State store requests",
                "cps",
                [hs.target(q.EXPORTER_STATE_STORE_REQUEST_RATE, "{{instance}} {{backend}} {{operation}}")],
                description="Requests to the state store (wandb or sqlite) per second, by operation.",
                min_value=0,
            ),
            hs.table(
                "State store",
                "none",
                [hs.target(q.EXPORTER_STATE_STORE, instant=True, table=True)],
                description="Which state store backend and project each exporter uses.",
                hide=("Time", "__name__", "Value"),
            ),
        ],
    )


def _upstreams() -> hs.Row:
    return hs.Row(
        "NVML and ComputeDb",
        [
            hs.state_timeline(
                "NVML up",
                "none",
                [hs.target(q.EXPORTER_NVML_UP, "{{instance}}")],
                description="Whether the miner exporter can talk to the NVIDIA driver.",
            ),
            hs.timeseries(
                "NVML errors",
                "short",
                [hs.target(q.EXPORTER_NVML_ERROR_RATE, "{{instance}} {{reason}}")],
                description="NVML call errors per rate interval by bounded reason (not_supported is "
                "normal on consumer GPUs).",
                min_value=0,
            ),
            hs.table(
                "Driver",
                "none",
                [hs.target(q.EXPORTER_NVML_INFO, instant=True, table=True)],
                description="Driver, NVML and CUDA driver versions per miner host.",
                hide=("Time", "__name__", "job", "Value"),
            ),
            hs.state_timeline(
                "ComputeDb up",
                "none",
                [hs.target(q.EXPORTER_VALIDATOR_DB_UP, "{{instance}}")],
                description="Whether the validator exporter can read ComputeDb.",
            ),
        ],
    )


def _registrar() -> hs.Row:
    """The on-chain Prometheus record: SN27's validator version beacon, shared with the neuron."""
    return hs.Row(
        "Registrar: the on-chain Prometheus record",
        [
            hs.timeseries(
                "Registrar: time since last success",
                "s",
                [hs.target(q.EXPORTER_REGISTRAR_SUCCESS_AGE, "{{instance}}")],
                description="Time since the registrar last served (or confirmed) the on-chain "
                "Prometheus record.",
                min_value=0,
            ),
            hs.timeseries(
                "Registrar attempts",
                "cps",
                [hs.target(q.EXPORTER_REGISTRAR_ATTEMPT_RATE, "{{instance}} {{outcome}}")],
                description="Registrar runs per second by outcome; waiting_rate_limit is a serve "
                "held back until the chain's serving rate limit has passed.",
                min_value=0,
            ),
            hs.timeseries(
                "Registrar: on-chain version",
                "none",
                [hs.target(q.EXPORTER_REGISTRAR_ONCHAIN_VERSION, "{{instance}}")],
                description="Version in the record (100*major + 10*minor + patch). It is the SN27 "
                "neuron's: miners read it, the registrar keeps it.",
            ),
            hs.state_timeline(
                "Registrar: record owner",
                "none",
                [hs.target(q.EXPORTER_REGISTRAR_OWNER, "{{instance}} {{owner}}")],
                description="Whose endpoint the record carries: ours (the exporter's ip and port), "
                "the neuron's (port 8091 after it re-served), other, or none.",
                mappings=hs.YES_NO,
            ),
            hs.timeseries(
                "Registrar: serves",
                "short",
                [
                    hs.target(q.EXPORTER_REGISTRAR_SERVES, "{{instance}} ours: {{cause}}"),
                    hs.target(q.EXPORTER_REGISTRAR_OTHER_SERVES, "{{instance}} by {{by}}"),
                ],
                description="Our serves by cause, and serves by others seen on chain. More than one "
                "of each per neuron upgrade or IP change would mean the two fight.",
                min_value=0,
            ),
            hs.table(
                "Registrar: on-chain endpoint",
                "none",
                [
                    hs.target(q.EXPORTER_REGISTRAR_ADDRESS, instant=True, table=True),
                    hs.target(q.EXPORTER_REGISTRAR_PORT, instant=True, table=True),
                ],
                description="IP and port in the record as the registrar last read them.",
                columns={"B": ("Port", "none")},
                hide=("Time", "__name__", "job", "Value #A"),
            ),
        ],
    )


def build() -> core.Dashboard:
    """The Exporter health dashboard."""
    return hs.dashboard(
        uid=UID,
        title="OpenCompute / Exporter health",
        description="Health of the opencompute exporters themselves: scrapes, collectors, "
        "refresh, publishing.",
        variables=[
            hs.job_variable(q.VAR_EXPORTER_JOB),
            hs.instance_variable(q.VAR_EXPORTER_INSTANCE),
        ],
        rows=[_targets(), _collectors(), _refresh(), _publishing(), _upstreams(), _registrar()],
    )
