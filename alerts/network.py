"""Alerts about the subnet-wide view from the network exporter: freshness, trust and run integrity."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert, ours
from exporters import dashboard_uids as uids

STEM = "network"


def _stale_trusted_validators() -> str:
    return (
        "time() - opencompute_network_validator_last_update_timestamp_seconds\n"
        f"> {t.VALIDATOR_STALE_SECONDS}\n"
        "and on (job, instance, hotkey)\n"
        "opencompute_network_validator_trusted == 1"
    )


def _new_rejections(reasons: str) -> str:
    """Rejections counted within the window, including those counted before the first scrape.

    The exporter refreshes at start-up, usually before Prometheus first scrapes it, so a counter
    can appear already above 0; ``increase()`` ignores a series' first sample, which would hide
    every rejection present at start-up. A series that did not exist one window ago counts with
    its current value.
    """
    total = f'opencompute_network_run_rejections_total{{reason=~"{reasons}"}}'
    window = t.RUNS_REJECTED_WINDOW
    return (
        "sum by (job, instance, role, reason) (\n"
        f"  increase({total}[{window}]) > 0\n"
        "  or\n"
        f"  ({total} > 0 unless {total} offset {window})\n"
        ")"
    )


def alerts() -> list[Alert]:
    """The network alerts, built from the current thresholds."""
    degraded = t.regex_of(t.DEGRADED_TRUST_SOURCES)
    tamper = t.regex_of(t.TAMPER_REJECT_REASONS)
    return [
        Alert(
            name="OpenComputeOwnValidatorStale",
            expr=ours(f"max by (hotkey) (\n{_stale_trusted_validators()}\n)", role="validator"),
            for_=t.VALIDATOR_STALE_FOR,
            severity="warning",
            summary="Our validator's run on the network is stale.",
            description=(
                "Our validator {{ $labels.hotkey }} (declared with --network.our-hotkeys, or run "
                "by a validator exporter this Prometheus scrapes) has not "
                "updated its run for {{ $value | humanizeDuration }}. Miners and other validators "
                "see its stats and allocations as they were then."
            ),
            dashboard_uid=uids.NETWORK,
        ),
        Alert(
            name="OpenComputeOurHotkeyUndeclared",
            expr=(
                "max by (job, instance, role, hotkey) (opencompute_identity_info)\n"
                "unless on (hotkey)\n"
                "opencompute_network_our_hotkey_info\n"
                "and on ()\n"
                'count(opencompute_exporter_build_info{exporter="network"}) > 0'
            ),
            for_=t.OUR_HOTKEY_UNDECLARED_FOR,
            severity="warning",
            summary="A hotkey this Prometheus scrapes is not declared as ours to the network exporter.",
            description=(
                "The {{ $labels.role }} exporter on {{ $labels.instance }} runs hotkey "
                "{{ $labels.hotkey }}, which is missing from the network exporter's "
                "--network.our-hotkeys. Its penalty and allocation alerts work only while that "
                "exporter is up, and stop (resolve) when its host goes down: add the hotkey to "
                "--network.our-hotkeys on every network exporter replica."
            ),
            dashboard_uid=uids.NETWORK,
        ),
        Alert(
            name="OpenComputeValidatorStale",
            expr=_stale_trusted_validators(),
            for_=t.VALIDATOR_STALE_FOR,
            severity="info",
            summary="A trusted validator's run on the network is stale.",
            description=(
                "Trusted validator {{ $labels.hotkey }} has not updated its run for "
                "{{ $value | humanizeDuration }}; the network view leans on the other validators."
            ),
            dashboard_uid=uids.NETWORK,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeRunsRejected",
            expr=_new_rejections(tamper),
            severity="warning",
            summary="Runs with forged or altered signatures were seen.",
            description=(
                "{{ $value | humanize }} {{ $labels.role }} runs were rejected as {{ $labels.reason }} by "
                f"{{{{ $labels.instance }}}} in the last {t.RUNS_REJECTED_WINDOW}. Someone publishes forged, "
                "replayed or altered data; the view ignores it, but check whether one of our hotkeys is "
                "involved."
            ),
            dashboard_uid=uids.NETWORK,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeRunsMostlyV1Signed",
            expr=(
                'sum by (job, instance, role) (opencompute_network_runs{signature="v1_only"})\n'
                "/\n"
                "sum by (job, instance, role) (opencompute_network_runs)\n"
                f"> {t.V1_ONLY_RATIO}"
            ),
            for_=t.V1_ONLY_FOR,
            severity="info",
            summary="Most runs carry only the weak v1 signature.",
            description=(
                "{{ $value | humanizePercentage }} of {{ $labels.role }} runs are signed over the run id "
                "only, so their config could be altered without detection."
            ),
            dashboard_uid=uids.NETWORK,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeNetworkRefreshFailing",
            expr=(
                "opencompute_network_refresh_success == 0\n"
                "and on (job, instance, role)\n"
                "sum by (job, instance, role) (\n"
                "  increase(opencompute_network_refresh_failures_total"
                f"[{t.NETWORK_REFRESH_FAILURES_WINDOW}])\n"
                f") >= {t.NETWORK_REFRESH_FAILURES_MIN}"
            ),
            for_=t.NETWORK_REFRESH_FAILING_FOR,
            severity="warning",
            summary="The network exporter cannot refresh its snapshot.",
            description=(
                "The {{ $labels.role }} refresh on {{ $labels.instance }} keeps failing (at least "
                f"{t.NETWORK_REFRESH_FAILURES_MIN} failed attempts in {t.NETWORK_REFRESH_FAILURES_WINDOW}, "
                f"the latest included, for {t.NETWORK_REFRESH_FAILING_FOR}); the exporter keeps serving "
                "its last good snapshot."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeNetworkRefreshStale",
            expr=(
                'time() - opencompute_network_last_refresh_timestamp_seconds{role="miner"}\n'
                f"> {t.NETWORK_MINER_REFRESH_STALE_SECONDS}\n"
                "or\n"
                'time() - opencompute_network_last_refresh_timestamp_seconds{role!="miner"}\n'
                f"> {t.NETWORK_REFRESH_STALE_SECONDS}"
            ),
            for_=t.NETWORK_REFRESH_STALE_FOR,
            severity="warning",
            summary="The network exporter's snapshot is stale.",
            description=(
                "The {{ $labels.role }} snapshot on {{ $labels.instance }} is "
                "{{ $value | humanizeDuration }} old. Penalty, allocation and stats alerts work on old "
                "data until it refreshes."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeNetworkTrustDegraded",
            expr=f'opencompute_network_trust_source_info{{source=~"{degraded}"}} == 1',
            for_=t.TRUST_DEGRADED_FOR,
            severity="warning",
            summary="The network exporter has no source of trusted validators.",
            description=(
                "{{ $labels.instance }} has no trusted validator set (source {{ $labels.source }}): "
                "the chain is unreachable and there is neither a cache nor an allowlist, so no run "
                "is trusted and the network view is empty."
            ),
            dashboard_uid=uids.NETWORK,
            hold_while_target_down=True,
        ),
    ]
