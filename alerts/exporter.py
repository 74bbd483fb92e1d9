"""Alerts about the exporters themselves: targets, collectors and publishing."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert
from exporters import dashboard_uids as uids

STEM = "exporter"


def alerts() -> list[Alert]:
    """The exporter-health alerts, built from the current thresholds."""
    jobs = f'job=~"{t.EXPORTER_JOB_REGEX}"'
    return [
        Alert(
            name="OpenComputeExporterDown",
            expr=f"up{{{jobs}}} == 0",
            for_=t.TARGET_DOWN_FOR,
            severity="critical",
            summary="An opencompute exporter target is down.",
            description=(
                "Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) "
                f"for {t.TARGET_DOWN_FOR}. Nothing from this target is monitored meanwhile; its "
                "per-GPU and per-miner alerts are inhibited until it is back."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
        ),
        Alert(
            name="OpenComputeExporterAbsent",
            expr=f"absent(up{{{jobs}}})",
            for_=t.TARGET_ABSENT_FOR,
            severity="critical",
            summary="Prometheus has no opencompute exporter targets.",
            description=(
                f'No scrape target with a job matching "{t.EXPORTER_JOB_REGEX}" has existed for '
                f"{t.TARGET_ABSENT_FOR}: service discovery or the scrape config lost them, so no "
                "other opencompute alert can fire."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
        ),
        Alert(
            name="OpenComputeCollectorFailing",
            expr="opencompute_scrape_collector_success == 0",
            for_=t.COLLECTOR_FAILING_FOR,
            severity="warning",
            summary="An exporter collector keeps failing.",
            description=(
                "Collector {{ $labels.collector }} on {{ $labels.instance }} has failed every scrape for "
                f"{t.COLLECTOR_FAILING_FOR}; its metrics are missing, so alerts built on them cannot "
                "fire. The exporter log says why."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeCollectorSlow",
            expr=f"opencompute_scrape_collector_duration_seconds > {t.COLLECTOR_SLOW_SECONDS}",
            for_=t.COLLECTOR_SLOW_FOR,
            severity="info",
            summary="An exporter collector is slow.",
            description=(
                "Collector {{ $labels.collector }} on {{ $labels.instance }} takes "
                "{{ $value | humanizeDuration }} per scrape; near the scrape timeout the whole "
                "scrape fails."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputePublishOutboxGrowing",
            expr=(
                f"opencompute_publish_outbox_entries > {t.OUTBOX_BACKLOG_ENTRIES}\n"
                "and\n"
                f"deriv(opencompute_publish_outbox_entries[{t.OUTBOX_GROWTH_WINDOW}]) > 0"
            ),
            for_=t.OUTBOX_GROWING_FOR,
            severity="warning",
            summary="The publish outbox keeps growing.",
            description=(
                "{{ $labels.instance }} holds {{ $value }} unpublished updates in its outbox and the "
                f"backlog has grown for {t.OUTBOX_GROWING_FOR}: the state store (WandB) is not "
                "accepting them, so validators see stale data."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputePublishStale",
            expr=(
                "time() - opencompute_publish_last_success_timestamp_seconds "
                f"> {t.PUBLISH_STALE_SECONDS}\n"
                "and\n"
                "opencompute_publish_last_success_timestamp_seconds > 0"
            ),
            for_=t.PUBLISH_STALE_FOR,
            severity="warning",
            summary="Publishing to the state store has stopped succeeding.",
            description=(
                "{{ $labels.instance }} last published successfully {{ $value | humanizeDuration }} "
                "ago; the network sees its specs or scores as they were then."
            ),
            dashboard_uid=uids.EXPORTER_HEALTH,
            hold_while_target_down=True,
        ),
    ]
