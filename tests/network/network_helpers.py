"""Signed RunRecords built with real sr25519 dev keys (no store needed)."""

from __future__ import annotations

from typing import Any

from bittensor_core import Keypair

from exporters.core.signing import ENVELOPE_KEY, make_envelope, sign_v1
from exporters.core.state.base import RunRecord

PROJECT = "neuralinternet/opencompute"
_KEYS: dict[str, Keypair] = {}


def key(uri: str) -> Keypair:
    if uri not in _KEYS:
        _KEYS[uri] = Keypair.create_from_uri(uri)
    return _KEYS[uri]


def record(
    uri: str,
    role: str,
    payload: dict[str, Any],
    *,
    run_id: str,
    now: float,
    signed_at: float | None = None,
    updated_at: float | None = None,
    created_at: float = 0.0,
    seq: int = 1,
    v2: bool = True,
    top_level: bool = True,
    netuid: int = 27,
    state: str = "running",
) -> RunRecord:
    """A run as a store returns it: v1 signature always, v2 envelope unless ``v2=False``.

    ``top_level`` mirrors the payload at the top level (the original's shape / "full" mode).
    """
    kp = key(uri)
    config: dict[str, Any] = {
        "hotkey": kp.ss58_address,
        "role": role,
        "config": {"netuid": netuid},
        "version": 190,
        "signature": sign_v1(kp, run_id),
    }
    if top_level or not v2:
        config.update(payload)
    if v2:
        config[ENVELOPE_KEY] = make_envelope(
            kp,
            entity_project=PROJECT,
            netuid=netuid,
            run_id=run_id,
            role=role,
            payload=payload,
            seq=seq,
            signed_at=now if signed_at is None else signed_at,
        )
    return RunRecord(
        run_id,
        f"{role}-{kp.ss58_address}",
        config,
        state,
        created_at,
        now if updated_at is None else updated_at,
    )
