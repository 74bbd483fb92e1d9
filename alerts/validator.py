"""Alerts about one validator's proof-of-GPU work, from the validator exporter over ComputeDb."""

from __future__ import annotations

from alerts import thresholds as t
from alerts.builder import Alert
from exporters import dashboard_uids as uids

STEM = "validator"


def alerts() -> list[Alert]:
    """The validator alerts, built from the current thresholds."""
    return [
        Alert(
            name="OpenComputeValidatorPoGStale",
            expr=(
                "time() - max by (job, instance) (opencompute_validator_pog_last_timestamp_seconds)\n"
                f"> {t.POG_STALE_SECONDS}"
            ),
            for_=t.POG_STALE_FOR,
            severity="warning",
            summary="The validator has stopped recording proof-of-GPU results.",
            description=(
                "The newest proof-of-GPU row on {{ $labels.instance }} is "
                "{{ $value | humanizeDuration }} old; a round normally runs every ~72 minutes. The "
                "validator's PoG loop is stuck or failing, so scores go stale."
            ),
            dashboard_uid=uids.VALIDATOR_POG,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeValidatorDatabaseDown",
            expr="opencompute_validator_db_up == 0",
            for_=t.VALIDATOR_DB_DOWN_FOR,
            severity="warning",
            summary="The validator exporter cannot read ComputeDb.",
            description=(
                "{{ $labels.instance }} has not been able to read the validator's ComputeDb for "
                f"{t.VALIDATOR_DB_DOWN_FOR}; scores, PoG and challenge metrics are missing. "
                "opencompute_validator_db_errors_total says why (missing, locked, corrupt, schema)."
            ),
            dashboard_uid=uids.VALIDATOR_POG,
            hold_while_target_down=True,
        ),
        Alert(
            name="OpenComputeValidatorChallengeSuccessLow",
            expr=(
                'sum by (job, instance) (opencompute_validator_challenges{result="success"})\n'
                "/\n"
                "sum by (job, instance) (opencompute_validator_challenges)\n"
                f"< {t.CHALLENGE_SUCCESS_RATIO_MIN}\n"
                "and\n"
                f"sum by (job, instance) (opencompute_validator_challenges) >= {t.CHALLENGE_MIN_COUNT}\n"
                "and\n"
                "time() - max by (job, instance) (opencompute_validator_challenge_last_timestamp_seconds)\n"
                f"< {t.CHALLENGE_RECENT_SECONDS}"
            ),
            for_=t.CHALLENGE_SUCCESS_LOW_FOR,
            severity="warning",
            summary="Most of the validator's challenges fail.",
            description=(
                "Only {{ $value | humanizePercentage }} of the challenges recorded on "
                "{{ $labels.instance }} succeeded. When most miners fail at once the cause is usually "
                "on the validator side (network, keys, version)."
            ),
            dashboard_uid=uids.VALIDATOR_POG,
            hold_while_target_down=True,
        ),
    ]
