"""An independent re-statement of the original SN27 (ni-compute v1.9.0) network readers.

Written from shared/reference/original-system.md (§1.3, §2.1, §3, §7) and a reading of
``compute/wandb/wandb.py`` / ``neurons/validator.py`` at v1.9.0, WITHOUT any code from
``exporters/``: it is the oracle the exporter's whole pipeline is compared against. What it
keeps from the original, deliberately:

- ``api.runs(path, filters)`` with no ``order``: wandb 0.19.0 (pinned by v1.9.0) defaults to
  ``"+created_at"``, so runs come oldest first (:func:`api_order`);
- the trust list: ``metagraph.total_stake[uid] > 1.0e4``, no permit check, as a plain list;
- ``verify_run``: ``hotkey and signature`` truthy, then ``Keypair(ss58_address=hotkey).verify(
  sha256(run.id).digest(), bytes.fromhex(signature))`` with bittensor's Keypair (here
  ``bittensor_wallet``, what bittensor 9 uses), any exception meaning False;
- one ``try`` per run: an exception stops reading that run, what was already added stays;
- the per-entry test ``own_score is True and score > 0 and allocated is True`` in that order,
  then the trace line that evaluates ``(gpu_specs or {}).get(...)`` after each added entry;
- a final pass outside any ``try``: ``pick_dominant_dict`` and ``int(uid)`` may raise, and
  then the whole call raises (:class:`OriginalCrashed`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from bittensor_wallet import Keypair

VALIDATOR_PERMIT_STAKE = 1.0e4
NI_AUTHORITY = "5GmvyePN9aYErXBBhBnxZKGoGk4LKZApE4NkaSzW62CYCYNA"


class OriginalCrashed(Exception):
    """The original function raised out of its final pass (sync_scores fails)."""


def api_order(records: list[Any]) -> list[Any]:
    """``api.runs`` default order in wandb 0.19.0: ``+created_at``, oldest first."""
    return sorted(records, key=lambda r: (r.created_at, r.run_id))


def valid_validator_hotkeys(metagraph: list[tuple[str, float]]) -> list[str]:
    """``get_valid_validator_hotkeys``: every uid whose total stake is above 1e4, as a list."""
    return [hotkey for hotkey, total_stake in metagraph if total_stake > VALIDATOR_PERMIT_STAKE]


def verify_run(run: Any) -> bool:
    config = run.config
    hotkey = config.get("hotkey")
    signature = config.get("signature")
    digest = hashlib.sha256(run.run_id.encode()).digest()
    if hotkey and signature:
        try:
            if Keypair(ss58_address=hotkey).verify(digest, bytes.fromhex(signature)):
                return True
        except Exception:  # noqa: BLE001 - the original logs and returns False
            pass
    return False


def _matches(run: Any, key: str) -> bool:
    """The server-side filters: role validator, netuid 27 (the store applies those), key exists."""
    return isinstance(run.config, dict) and key in run.config


def get_allocated_hotkeys(runs: list[Any], valid: list[str]) -> list[Any]:
    out: list[Any] = []
    for run in api_order([r for r in runs if _matches(r, "allocated_hotkeys")]):
        try:
            config = run.config
            hotkey = config.get("hotkey")
            keys = config.get("allocated_hotkeys")
            if verify_run(run) and keys and hotkey in valid:
                out.extend(keys)
        except Exception:  # noqa: BLE001
            pass
    return out


def get_penalized_hotkeys_checklist_bak(runs: list[Any], authority: str = NI_AUTHORITY) -> list[Any]:
    valid = [authority]  # the original overwrites its argument with this one hotkey
    out: list[Any] = []
    candidates = [
        r for r in runs if _matches(r, "penalized_hotkeys_checklist") and r.config.get("hotkey") in valid
    ]
    for run in api_order(candidates):
        try:
            config = run.config
            hotkey = config.get("hotkey")
            listed = config.get("penalized_hotkeys_checklist")
            if verify_run(run) and listed and hotkey in valid:
                out.extend(listed)
        except Exception:  # noqa: BLE001
            pass
    return out


def _combo(entry: dict) -> tuple:
    specs = entry.get("gpu_specs", {})
    return (specs.get("gpu_name"), specs.get("num_gpus"), entry.get("score", 0))


def pick_dominant_dict(entries: list[dict]) -> dict:
    tally = Counter(_combo(e) for e in entries)
    if not tally:
        return max(entries, key=lambda e: e.get("score", 0))
    best_count = tally.most_common(1)[0][1]
    tied = [combo for combo, n in tally.items() if n == best_count]
    chosen = tied[0] if len(tied) == 1 else max(tied, key=lambda c: c[2])
    for entry in entries:
        if _combo(entry) == chosen:
            entry["own_score"] = True
            return entry
    raise AssertionError("unreachable")


def get_stats_allocated(runs: list[Any], valid: list[str]) -> dict[int, dict]:
    """uid -> the winning entry dict; raises :class:`OriginalCrashed` where the original raises."""
    aggregator: dict[str, list[dict]] = {}
    for run in api_order([r for r in runs if _matches(r, "stats")]):
        try:
            config = run.config
            hotkey = config.get("hotkey")
            stats = config.get("stats", {})
            if verify_run(run) and stats and hotkey in valid:
                for uid, data in stats.items():
                    if (
                        data.get("own_score") is True
                        and data.get("score", 0) > 0
                        and data.get("allocated") is True
                    ):
                        aggregator.setdefault(uid, []).append(data)
                        shown = data.get("gpu_specs") or {}
                        f"{config['hotkey']} {shown.get('gpu_name', 'N/A')} x {shown.get('num_gpus', 0)}"
        except Exception:  # noqa: BLE001 - logged per run
            pass
    try:
        final: dict[str, dict] = {}
        for uid, entries in aggregator.items():
            kept = [e for e in entries if e.get("score", 0) != 0]
            if not kept:
                continue
            if len(kept) == 1:
                kept[0]["own_score"] = True
                final[uid] = kept[0]
            else:
                final[uid] = pick_dominant_dict(kept)
        return {int(uid): entry for uid, entry in final.items()}
    except Exception as exc:
        raise OriginalCrashed(f"{type(exc).__name__}: {exc}") from exc
