"""Where the strict reading departs from the network's, and which validator makes it so.

The network's reading (:mod:`exporters.subnet.reading`) is what every v1.9.0 validator
computes. The strict reading counts one run per validator hotkey, requires a validator permit,
drops runs older than ``--network.max-run-age`` and reads content from the hotkey's signed v2
envelope where it has one. Comparing the two answers "the network computes X; a strict reading
gives Y because validator V has two runs", with bounded labels only: kinds and reasons are
fixed sets, hotkeys are validators the network trusts (registered, with stake), uids are
0..4095.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from exporters.subnet import views

KINDS = ("allocation", "stats", "penalty")
# Why the strict reading treats a validator the network counts differently, most telling first.
REASONS = ("no_permit", "stale", "duplicate_run", "tampered", "content_differs", "rejected")
CONTENT_KEYS = views.CONTENT_KEYS
OTHER = "other"  # a uid that differs although none of its voters has a reason (e.g. v2-only content)


@dataclass(frozen=True)
class Views:
    """The three results both readings produce."""

    allocation: views.AllocationView
    penalties: views.PenaltyView
    stats: Mapping[int, views.UidStats]


@dataclass(frozen=True)
class Divergence:
    """How far the strict reading is from the network's."""

    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType(dict.fromkeys(KINDS, 0)))
    validators: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    uids: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))


def validator_reasons(
    network_runs: Iterable[views.VerifiedRun],
    strict_validators: frozenset[str],
    rejected: Mapping[str, str],
    strict_runs: Mapping[str, views.VerifiedRun],
) -> dict[str, tuple[str, ...]]:
    """Validator hotkey -> reasons (from :data:`REASONS`) for each validator the network counts.

    ``rejected`` is the strict verification's run id -> reason; ``strict_runs`` the run the
    strict reading uses per hotkey.
    """
    by_hotkey: dict[str, list[views.VerifiedRun]] = {}
    for run in network_runs:
        if views.has_content(run):  # the runs the original's filters return
            by_hotkey.setdefault(run.hotkey, []).append(run)
    out: dict[str, tuple[str, ...]] = {}
    for hotkey, runs in by_hotkey.items():
        reasons = _reasons(hotkey, runs, strict_validators, rejected, strict_runs.get(hotkey))
        if reasons:
            out[hotkey] = tuple(r for r in REASONS if r in reasons)
    return out


def _reasons(
    hotkey: str,
    runs: list[views.VerifiedRun],
    strict_validators: frozenset[str],
    rejected: Mapping[str, str],
    chosen: views.VerifiedRun | None,
) -> set[str]:
    if hotkey not in strict_validators:
        return {"no_permit"}
    reasons = {"duplicate_run"} if len(runs) > 1 else set()
    for run in runs:
        reason = rejected.get(run.run_id)
        if reason is not None:
            reasons.add(reason if reason in ("stale", "tampered") else "rejected")
    if chosen is None:
        return reasons or {"rejected"}
    newest = max(runs, key=lambda r: r.timestamp)
    if chosen.payload is not newest.payload and _content(chosen) != _content(newest):
        reasons.add("content_differs")
    return reasons


def _content(run: views.VerifiedRun) -> tuple[Any, ...]:
    return tuple(run.payload.get(key) for key in CONTENT_KEYS)


def _stats_key(entry: views.UidStats | None) -> tuple[Any, ...] | None:
    if entry is None:
        return None
    return (entry.hotkey, entry.gpu_name, entry.gpu_count, entry.score)


def compare(network: Views, strict: Views, reasons: Mapping[str, tuple[str, ...]]) -> Divergence:
    """Items that differ between the readings, and a reason per differing uid."""
    allocation = set(network.allocation.claims) ^ set(strict.allocation.claims)
    penalty = network.penalties.enforced ^ strict.penalties.enforced
    uids: dict[int, str] = {}
    for uid in sorted(set(network.stats) | set(strict.stats)):
        ours, theirs = network.stats.get(uid), strict.stats.get(uid)
        if _stats_key(ours) == _stats_key(theirs):
            continue
        voters = (*(ours.voters if ours else ()), *(theirs.voters if theirs else ()))
        uids[uid] = _first_reason(voters, reasons)
    counts = {"allocation": len(allocation), "stats": len(uids), "penalty": len(penalty)}
    return Divergence(
        MappingProxyType(counts),
        MappingProxyType(dict(sorted(reasons.items()))),
        MappingProxyType(uids),
    )


def _first_reason(voters: Iterable[str], reasons: Mapping[str, tuple[str, ...]]) -> str:
    found = {r for voter in voters for r in reasons.get(voter, ())}
    return next((r for r in REASONS if r in found), OTHER)
