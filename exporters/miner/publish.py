"""The miner's run-config publisher job: specs, allocation and port state, signed via core.publish.

Reads the same upstream snapshots as the collectors (one host read, one NVML snapshot, the
allocation source's last good result, the port checker's last result) and hands
:func:`build_miner_payload` to the core :class:`~exporters.core.publish.Publisher` (durable
outbox, v1 + v2 signatures). The original miner re-published specs every 150 blocks (about 30
minutes) and allocation on every change; so does this job: a full payload every ``interval``,
and at once (on the next tick, within a minute) when allocation or port state changes. While
the allocation is not known yet (no successful allocation refresh), the payload leaves
``allocated`` out instead of claiming "not allocated".

Likewise for the GPUs: while NVML does not answer (driver reload, library/driver version
mismatch after an upgrade), the GPU part of the specs is the last one NVML answered for, and
without one the payload leaves ``specs`` out (the outbox keeps the last published specs). The
original validator deallocates an allocated miner whose published ``gpu.count`` or
``gpu.details[0].name`` changes, so publishing ``"gpu": {}`` for a monitoring hiccup would end
a renter's allocation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

from exporters.miner.host import HostSpecs
from exporters.miner.nvml import NvmlSnapshot
from exporters.miner.specs import Unknown, build_miner_payload, build_specs

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_INTERVAL = 1800.0


class MinerPublishJob:
    """``tick()`` runs in a background Loop (every minute); it submits only when something is due."""

    def __init__(
        self,
        publisher: Any,
        *,
        host: Callable[[], HostSpecs],
        gpus: Callable[[], NvmlSnapshot | None],
        allocation: Callable[[], str | Literal[Unknown.UNKNOWN] | None],
        port_open: Callable[[], bool | None],
        interval: float = DEFAULT_PUBLISH_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self._host = host
        self._gpus = gpus
        self._allocation = allocation
        self._port_open = port_open
        self._interval = interval
        self._clock = clock
        self._last_state: tuple[Any, bool | None] | None = None
        self._last_at = float("-inf")
        self._last_gpu: dict[str, Any] | None = None  # GPU specs from the last snapshot NVML answered

    def tick(self) -> bool:
        """Submit and flush a payload if the interval passed or allocation/port changed."""
        state = (self._allocation(), self._port_open())
        now = self._clock()
        if state == self._last_state and now - self._last_at < self._interval:
            return False
        specs = self._specs()
        payload = build_miner_payload(specs or {}, *state)
        if specs is None:
            del payload["specs"]
        self._publisher.submit(payload)
        if state != self._last_state and self._last_state is not None:
            log.info("miner state changed (allocated=%s, port_open=%s): publishing", *state)
        self._last_state, self._last_at = state, now
        self._publisher.flush()
        return True

    def _specs(self) -> dict[str, Any] | None:
        """Host specs with the last GPU specs NVML answered for; None before NVML ever answered."""
        snap = self._gpus()
        specs = build_specs(self._host(), snap)
        if snap is None or snap.up:
            self._last_gpu = specs["gpu"]
            return specs
        if self._last_gpu is None:
            log.warning("NVML is down (%s): publishing no specs until it answers", snap.reason)
            return None
        log.warning("NVML is down (%s): publishing the last GPU specs it answered for", snap.reason)
        return {**specs, "gpu": self._last_gpu}
