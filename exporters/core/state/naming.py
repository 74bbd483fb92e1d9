"""Which run an exporter writes, and the shape of its config: never the neuron's run.

Why a run of our own. W&B keeps one config per run and a client sends its whole config on
every update (wandb-core ``runconfig.Serialize`` + ``UpsertBucket``; wandb/wandb#4377), so two
processes writing one run erase or roll back each other's keys. The SN27 neurons
(``ComputeWandb``) write ``{role}-{hotkey}`` all the time. Our exporters therefore publish into
runs that only they write:

- display name ``opencompute-exporter-{role}-{hotkey}``. The original's ``get_run_id`` looks
  for exactly ``{role}-{hotkey}`` (and deletes other non-running runs of *that* name); our
  prefix makes the two names differ for every role and hotkey (no ss58 address starts with
  ``exporter-``), so it never adopts or deletes our runs;
- config ``{"opencompute": <signed v2 envelope>}`` and nothing else: no top-level ``role``,
  no ``config.netuid``, none of ``allocated_hotkeys``, ``stats``, ``penalized_hotkeys``,
  ``penalized_hotkeys_checklist``, ``specs``, ``hotkey``. Every reader of the original filters
  on ``config.role`` and ``config.config.netuid`` first, so none of them ever returns our runs.

Our readers select our runs on the envelope's own fields (``config.opencompute.role`` and
``config.opencompute.netuid``) and trust only the signature inside it, never the name.
"""

from __future__ import annotations

from typing import Any

from exporters.core.signing import ENVELOPE_KEY

EXPORTER_RUN_PREFIX = "opencompute-exporter-"
TARGETS = ("exporter", "neuron")  # our own run (default) or the neuron's (simulations only)

# Top-level keys the original's readers filter on; our runs must carry none of them.
ORIGINAL_FILTER_KEYS = (
    "role",
    "config",
    "hotkey",
    "allocated_hotkeys",
    "stats",
    "penalized_hotkeys",
    "penalized_hotkeys_checklist",
    "specs",
)


def neuron_run_name(role: str, hotkey: str) -> str:
    """The original's display name (``ComputeWandb``): ``{role}-{hotkey}``."""
    return f"{role}-{hotkey}"


def exporter_run_name(role: str, hotkey: str) -> str:
    """Our display name, which the original's ``get_run_id`` never matches."""
    return f"{EXPORTER_RUN_PREFIX}{role}-{hotkey}"


def run_name(role: str, hotkey: str, target: str = "exporter") -> str:
    """The display name of the run ``target`` refers to."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    return exporter_run_name(role, hotkey) if target == "exporter" else neuron_run_name(role, hotkey)


def exporter_config(envelope: dict[str, Any]) -> dict[str, Any]:
    """The whole config of one of our runs: the signed envelope only."""
    return {ENVELOPE_KEY: envelope}


def exporter_filters(role: str, netuid: int) -> dict[str, Any]:
    """The W&B runs filter that selects our runs of ``role`` on ``netuid`` (and no neuron's)."""
    return {
        "$and": [
            {f"config.{ENVELOPE_KEY}.role": role},
            {f"config.{ENVELOPE_KEY}.netuid": netuid},
        ]
    }


def envelope_of(config: Any) -> dict[str, Any] | None:
    """The envelope dict of a run config, or None (never trusted before verification)."""
    env = config.get(ENVELOPE_KEY) if isinstance(config, dict) else None
    return env if isinstance(env, dict) else None
