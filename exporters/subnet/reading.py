"""The network's reading: the validator runs the original v1.9.0 code counts, in its order.

This is the default view (allocation, penalties, dominant stats, the miner exporter's
``allocated``): it reproduces what every SN27 validator computes, so an SRE sees the network's
actual result. The rules, as ni-compute v1.9.0 applies them (``compute/wandb/wandb.py``):

- **Content** is the run's top-level config (``stats``, ``allocated_hotkeys``,
  ``penalized_hotkeys_checklist``); a v2 envelope is not consulted.
- **Signature**: ``verify_run``, the v1 check of ``config.hotkey``/``config.signature`` over
  ``sha256(run_id)``, with its truthiness test on both fields.
- **Trust**: the hotkey is among the validator set (stake strictly above the threshold, no
  permit check; see :func:`exporters.subnet.trust.validators_from`). The penalty checklist
  instead comes from the hardcoded authority, on its signature alone.
- **Every verified run counts**: no age rule, no de-duplication per hotkey, any run state.
- **Order**: ``api.runs`` without an ``order`` argument; wandb 0.19.0 (pinned by v1.9.0)
  defaults to :data:`ORIGINAL_ORDER`, oldest created first. That order breaks ties in
  ``pick_dominant_dict``. Runs created in the same second are ordered by run id here (the
  server's order among them is not documented).

The strict reading (one vote per hotkey, permit, max age, v2 content) is in ``refresh.py`` and
``divergence.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from exporters.core.signing import verify_v1
from exporters.core.state.base import RunRecord
from exporters.subnet.views import VerifiedRun

ORIGINAL_ORDER = "+created_at"  # wandb 0.19.0 ``Api.runs(order="+created_at")`` default


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def read_order(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Records in the original's iteration order: oldest created first, then run id."""
    return sorted(records, key=lambda r: (_num(r.created_at), str(r.run_id)))


@dataclass
class V1Memo:
    """v1 verdicts by (run id, hotkey, signature).

    The original's ``verify_run`` is a pure function of these three strings, so a verdict is
    reused across refreshes until one of them changes: a refresh re-verifies only new runs and
    re-signed ones (the original re-signs on every config update).
    """

    verdicts: dict[tuple[str, str, str], bool] = field(default_factory=dict)
    checks: int = 0

    def verified(self, record: RunRecord) -> bool:
        """The original's ``verify_run(run)``: both fields truthy and the v1 signature valid."""
        config = record.config
        hotkey, signature = config.get("hotkey"), config.get("signature")
        if not (hotkey and signature):
            return False
        if not all(isinstance(v, str) for v in (hotkey, signature, record.run_id)):
            return False  # Keypair(ss58_address=...) or bytes.fromhex raises: False
        key = (record.run_id, hotkey, signature)
        verdict = self.verdicts.get(key)
        if verdict is None:
            self.checks += 1
            verdict = self.verdicts[key] = verify_v1(hotkey, signature, record.run_id)
        return verdict

    def retain(self, records: Iterable[RunRecord]) -> None:
        """Forget verdicts for runs no longer read (bounded by the runs in the cache)."""
        ids = {r.run_id for r in records}
        for key in [k for k in self.verdicts if k[0] not in ids]:
            del self.verdicts[key]


@dataclass(frozen=True)
class NetworkReading:
    """Validator runs as the original counts them, in its read order."""

    trusted: tuple[VerifiedRun, ...]  # verified, from the validator set: allocation and stats
    authorities: tuple[VerifiedRun, ...]  # verified runs of penalty authorities, any stake


def read_network(
    records: Iterable[RunRecord],
    trusted: Collection[str],
    authorities: Collection[str] = (),
    memo: V1Memo | None = None,
) -> NetworkReading:
    """The runs every v1.9.0 validator counts, from all validator runs of the netuid."""
    memo = memo if memo is not None else V1Memo()
    counted: list[VerifiedRun] = []
    by_authority: list[VerifiedRun] = []
    for record in read_order(records):
        config = record.config
        if not isinstance(config, dict):
            continue
        hotkey = config.get("hotkey")
        if not isinstance(hotkey, str):
            continue  # could not verify
        is_trusted, is_authority = hotkey in trusted, hotkey in authorities
        if not (is_trusted or is_authority) or not memo.verified(record):
            continue
        run = VerifiedRun(
            run_id=record.run_id,
            role="validator",
            hotkey=hotkey,
            payload=config,
            signature="v1_only",
            timestamp=_num(record.updated_at),
            state=record.state if isinstance(record.state, str) else "",
        )
        if is_trusted:
            counted.append(run)
        if is_authority:
            by_authority.append(run)
    return NetworkReading(tuple(counted), tuple(by_authority))
