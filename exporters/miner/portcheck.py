"""Is the miner's advertised ip:port reachable? A real TCP connect, run in a background loop.

Validators reject miners whose axon port is closed (``PORT_CLOSED``). The check connects to the
configured *external* address from this host, so it exercises the firewall and port forwarding, but
a router without hairpin NAT can make it fail from inside while validators outside succeed; the
HELP text and the docs say so. Never run on a scrape: a filtered port takes the whole timeout.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortResult:
    """The outcome of the last check."""

    open: bool
    checked_at: float
    error: str = ""


class PortChecker:
    """Connects to ``host:port`` with a timeout; keeps the last result for the collector."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._last: PortResult | None = None

    @property
    def last(self) -> PortResult | None:
        """The last result, or None before the first check."""
        with self._lock:
            return self._last

    def check(self) -> PortResult:
        """Try one TCP connection now; log only when the state changes."""
        error = ""
        try:
            with socket.create_connection((self.host, self.port), timeout=self._timeout):
                is_open = True
        except OSError as exc:
            is_open = False
            error = "timeout" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        result = PortResult(open=is_open, checked_at=self._clock(), error=error)
        with self._lock:
            previous, self._last = self._last, result
        if previous is None or previous.open != is_open:
            if is_open:
                log.info("miner port %s:%d is open", self.host, self.port)
            else:
                log.warning("miner port %s:%d is not reachable: %s", self.host, self.port, error)
        return result
