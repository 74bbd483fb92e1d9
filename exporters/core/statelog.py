"""Log a repeated failure once per change of state, plus a periodic reminder.

A database that stays unreadable, or an upstream that stays down, fails the same way on every
scrape or loop round; logging each one buries everything else (18 lines for 9 scrapes). A
:class:`StateLog` keeps the last state per key: a new state is logged at once, the same state
again only every ``remind_every`` seconds (with how often it recurred), and the return to normal
once. ::

    states = StateLog(log)
    states.failing("db", "locked", "validator db unreadable: reason=locked ...")
    states.ok("db", "validator db readable again")
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_REMIND_EVERY = 600.0


@dataclass
class _State:
    state: str
    since: float
    logged_at: float
    repeats: int = 0


class StateLog:
    """Per-key failure state for one logger; thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        remind_every: float = DEFAULT_REMIND_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._remind_every = remind_every
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def failing(self, key: str, state: str, message: str, *, level: int = logging.WARNING) -> bool:
        """Record that ``key`` is in failure ``state``; log ``message`` if new or due a reminder.

        Returns whether a line was written.
        """
        now = self._clock()
        with self._lock:
            cur = self._states.get(key)
            if cur is None or cur.state != state:
                self._states[key] = _State(state, now, now)
                suffix = ""
            elif now - cur.logged_at >= self._remind_every:
                suffix = f" (still failing since {now - cur.since:.0f}s, {cur.repeats + 1} times)"
                cur.logged_at, cur.repeats = now, 0
            else:
                cur.repeats += 1
                return False
        self._log.log(level, "%s%s", message, suffix)
        return True

    def ok(self, key: str, message: str | None = None) -> bool:
        """Record that ``key`` works again; log ``message`` once if it was failing."""
        with self._lock:
            was = self._states.pop(key, None)
        if was is None:
            return False
        if message:
            self._log.info("%s", message)
        return True

    def state(self, key: str) -> str | None:
        """The current failure state of ``key`` (None when fine)."""
        with self._lock:
            cur = self._states.get(key)
            return cur.state if cur else None
