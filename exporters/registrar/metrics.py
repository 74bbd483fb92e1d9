"""Loop-mode metrics of the registrar, built fresh from :class:`RegistrarState` at each scrape. ::

    opencompute_registrar_last_attempt_timestamp_seconds 1.7e9
    opencompute_registrar_last_success_timestamp_seconds 1.7e9
    opencompute_registrar_attempts_total{outcome="skipped_unchanged"} 12.0
    opencompute_registrar_serves_total{cause="neuron_reserved"} 1.0
    opencompute_registrar_record_changes_total{by="neuron"} 1.0
    opencompute_registrar_transport_retries_total 2.0
    opencompute_registrar_up_to_date 1.0
    opencompute_registrar_record_owner{owner="ours"} 1.0
    opencompute_registrar_role_info{role="validator"} 1.0
    opencompute_registrar_onchain_version 191.0
    opencompute_registrar_onchain_address_info{ip="203.0.113.7",ip_type="4"} 1.0
    opencompute_registrar_onchain_port 9928.0
    opencompute_registrar_onchain_block 4.2e6

Names and meanings are in docs/metrics/registrar.md.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.registrar.record import Cause, Owner
from exporters.registrar.service import Outcome, RegistrarState


class RegistrarCollector(SubCollector):
    """The registrar's own health: when it last tried and succeeded, outcomes, the on-chain record.

    Timestamps and the on-chain gauges are absent until the first run has produced them, so an
    alert on ``time() - ..._last_success_timestamp_seconds`` never fires on a made-up zero.
    """

    name = "registrar"

    def __init__(self, state: RegistrarState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        snap = self._state.snapshot()
        yield from _timestamp(
            "opencompute_registrar_last_attempt_timestamp_seconds",
            "Unix time the last registrar run started.",
            snap["last_attempt"],
        )
        yield from _timestamp(
            "opencompute_registrar_last_success_timestamp_seconds",
            "Unix time of the last run that left the on-chain record up to date (served or unchanged).",
            snap["last_success"],
        )
        attempts = CounterMetricFamily(
            "opencompute_registrar_attempts",
            "Registrar runs by outcome (served, skipped_unchanged, waiting_rate_limit, no_record, "
            "invalid, rate_limited, dispatch_error, transport_error, error).",
            labels=["outcome"],
        )
        for outcome in Outcome:
            attempts.add_metric([outcome.value], float(snap["outcomes"].get(outcome.value, 0)))
        yield attempts
        yield _counter(
            "opencompute_registrar_serves",
            "Records this registrar served, by cause "
            "(no_record, version, neuron_reserved, ip, port, forced).",
            "cause",
            [c.value for c in Cause],
            snap["serves"],
        )
        yield _counter(
            "opencompute_registrar_record_changes",
            "Serves by someone else seen on chain (the record's block moved without us), by whose "
            "endpoint the new record carries: neuron (its port) or other.",
            "by",
            [Owner.NEURON.value, Owner.OTHER.value],
            snap["changes"],
        )
        yield CounterMetricFamily(
            "opencompute_registrar_transport_retries",
            "Attempts repeated after a transport failure (connection refused/closed, timeout).",
            value=float(snap["transport_retries"]),
        )
        if snap["up_to_date"] is not None:
            yield GaugeMetricFamily(
                "opencompute_registrar_up_to_date",
                "Whether the on-chain Prometheus record matched the desired version, ip and port at "
                "the last successful read (1) or not (0).",
                value=1.0 if snap["up_to_date"] else 0.0,
            )
        if snap["owner"] is not None:
            owner = GaugeMetricFamily(
                "opencompute_registrar_record_owner",
                "Whose endpoint the on-chain record carried at the last read (1 for the one that "
                "applies): ours, the neuron's (its port), other, or none (no record).",
                labels=["owner"],
            )
            for value in Owner:
                owner.add_metric([value.value], 1.0 if snap["owner"] is value else 0.0)
            yield owner
        if snap["role"] is not None:
            role = GaugeMetricFamily(
                "opencompute_registrar_role_info",
                "The hotkey's role as the registrar treats it (validator: has a permit, or "
                "--registrar.role); always 1.",
                labels=["role"],
            )
            role.add_metric([snap["role"].value], 1.0)
            yield role
        record = snap["onchain"]
        if record is not None:
            yield GaugeMetricFamily(
                "opencompute_registrar_onchain_version",
                "Version in the on-chain Prometheus record (100*major + 10*minor + patch).",
                value=float(record.version),
            )
            address = GaugeMetricFamily(
                "opencompute_registrar_onchain_address_info",
                "IP address in the on-chain Prometheus record, as seen at the last read; always 1.",
                labels=["ip", "ip_type"],
            )
            address.add_metric([record.address, str(record.ip_type)], 1.0)
            yield address
            yield GaugeMetricFamily(
                "opencompute_registrar_onchain_port",
                "Port in the on-chain Prometheus record.",
                value=float(record.port),
            )
            if record.block is not None:
                yield GaugeMetricFamily(
                    "opencompute_registrar_onchain_block",
                    "Block at which the on-chain Prometheus record was last served.",
                    value=float(record.block),
                )


def _counter(name: str, text: str, label: str, keys: list[str], counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, text, labels=[label])
    for key in keys:
        family.add_metric([key], float(counts.get(key, 0)))
    return family


def _timestamp(name: str, text: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        yield GaugeMetricFamily(name, text, value=value)
