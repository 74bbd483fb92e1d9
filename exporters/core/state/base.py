"""The state-store interface every exporter codes against: publish my run, read a role's runs.

Two backends implement it: WandB (the live network, project ``neuralinternet/opencompute``) and
SQLite via peewee (the embedded default for the demo, tests and hosts without WandB).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


class StoreError(Exception):
    """A state-store operation failed; ``reason`` is a bounded label value."""

    reason: str = "error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class StoreUnavailable(StoreError):
    """The store cannot be reached now (network, timeout, auth, locked DB); retry later."""

    reason = "unavailable"


@dataclass(frozen=True)
class RunRecord:
    """One run as read from a store: identity, unverified config, and server-side times."""

    run_id: str  # WandB run id (8 chars on the live network); what v1 signatures cover
    name: str  # display name, "{role}-{hotkey}"
    config: dict[str, Any]  # the full run config as stored, NOT verified
    state: str = "running"  # WandB run state: running, finished, crashed, ...
    created_at: float = 0.0  # unix seconds
    updated_at: float = 0.0  # unix seconds (WandB heartbeatAt/updatedAt)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def role(self) -> Any:
        return self.config.get("role")

    @property
    def hotkey(self) -> Any:
        return self.config.get("hotkey")


class RequestCounts:
    """Thread-safe upstream request counts by operation, behind every store's ``request_count(s)``.

    Loops and scrapes call a store from several threads; the counts feed
    ``opencompute_state_store_requests{operation}``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, operation: str) -> None:
        with self._lock:
            self._counts[operation] = self._counts.get(operation, 0) + 1

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def by_operation(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class StateStore(Protocol):
    """Publish this participant's run config; read all runs of a role on a netuid."""

    backend: str  # "wandb" or "sqlite"
    entity_project: str  # e.g. "neuralinternet/opencompute"

    def run_id_for(self, role: str, hotkey: str, target: str = "exporter") -> str:
        """The run id this hotkey publishes to (created or resumed); needed to sign v1/v2.

        ``target``: ``exporter`` (our own run ``opencompute-exporter-{role}-{hotkey}``) or
        ``neuron`` (the neuron's ``{role}-{hotkey}``; simulations only).
        """
        ...

    def publish(
        self,
        role: str,
        hotkey: str,
        updates: dict[str, Any],
        defaults: dict[str, Any] | None = None,
        *,
        target: str = "exporter",
    ) -> str:
        """Write ``updates``: as our run's whole config, or merged into the neuron's run; return run id.

        Raises StoreUnavailable when the store cannot be reached, StoreError(reason="conflict"
        or "unconfirmed") when the write could not be made safely or was not acknowledged.
        """
        ...

    def read_runs(
        self,
        role: str,
        netuid: int,
        *,
        require_key: str | None = None,
        running_only: bool = False,
        updated_since: float | None = None,
    ) -> list[RunRecord]:
        """All runs with ``config.role == role`` and ``config.config.netuid == netuid``.

        ``require_key`` adds ``{"config.<key>": {"$exists": True}}`` like the original filters.
        Raises StoreUnavailable when the store cannot be reached.
        """
        ...

    def request_count(self) -> int:
        """How many upstream requests (WandB GraphQL/HTTP calls, or SQL queries) were made."""
        ...
