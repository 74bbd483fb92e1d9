"""The run-config keys a validator publishes, built from a ComputeDb snapshot.

The shapes are the original's (``ComputeWandb.update_allocated_hotkeys`` and the penalize CLI),
so its readers (``get_stats_allocated``, ``get_allocated_hotkeys``, ``get_penalized_hotkeys``)
accept them unchanged::

    {
      "stats": {"3": {"uid": 3, "hotkey": "5F...", "gpu_specs": {"gpu_name": "NVIDIA H100 80GB HBM3",
                      "num_gpus": 8}, "score": 66.0, "allocated": true, "own_score": true,
                      "reliability_score": 0.0, "created_at": "2025-06-13 11:50:00"}, ...},
      "allocated_hotkeys": ["5F...", ...],
      "penalized_hotkeys": ["5G...", ...]
    }

Two deliberate differences from what v1.9.0 itself publishes, both in the readers' favour:

* ``score`` is on the 0..100 scale: an ``own_score = False`` row above 100 (the x100 bug) is
  divided back. Readers drop ``own_score = False`` entries anyway, so consensus is unchanged.
* ``allocated`` is recomputed from the ``allocation`` table, as ``update_allocated_hotkeys``
  does before every publish, rather than trusting a ``stats`` row written mid-``sync_scores``.
"""

from __future__ import annotations

from typing import Any

from exporters.validator.records import Snapshot, normalized_score
from exporters.validator.schema import DbReadError

PAYLOAD_TABLES: tuple[str, ...] = ("stats", "allocation", "blacklist")


def build_validator_payload(snapshot: Snapshot) -> dict[str, Any]:
    """``{"stats", "allocated_hotkeys", "penalized_hotkeys"}`` from one snapshot.

    Raises :class:`DbReadError` when a table it needs was not read: publishing an empty stats
    dict because the database was locked would erase this validator's view for every reader.
    """
    if snapshot.file_error is not None:
        raise DbReadError(snapshot.file_error)
    for table in PAYLOAD_TABLES:
        error = snapshot.error_for(table)
        if error is not None:
            raise DbReadError(error, table)
    allocated = set(snapshot.allocated)
    stats: dict[str, dict[str, Any]] = {}
    for uid, rec in sorted(snapshot.stats.items()):
        score, _ = normalized_score(rec)
        specs = rec.gpu_specs
        stats[str(uid)] = {
            "uid": uid,
            "hotkey": rec.hotkey,
            "gpu_specs": None if specs is None else {"gpu_name": specs.gpu_name, "num_gpus": specs.num_gpus},
            "score": float(score or 0.0),
            "allocated": rec.hotkey in allocated,
            "own_score": bool(rec.own_score),
            "reliability_score": rec.reliability_score,
            "created_at": rec.created_at,
        }
    return {
        "stats": stats,
        "allocated_hotkeys": list(snapshot.allocated),
        "penalized_hotkeys": list(snapshot.penalized),
    }
