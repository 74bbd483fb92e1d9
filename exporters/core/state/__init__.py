"""Signed run state: the store interface, its WandB and SQLite backends, and the outbox."""

from exporters.core.state.base import (
    RunRecord,
    StateStore,
    StoreError,
    StoreUnavailable,
)

__all__ = ["RunRecord", "StateStore", "StoreError", "StoreUnavailable"]
