"""A hand-driven clock for code that takes its time source as ``clock: Callable[[], float]``.

Stores, publishers, refreshers and the simulated GPUs read the time only through an injected
callable, so tests pin it and move it themselves: readings at chosen times are deterministic and
no test sleeps to let time pass.
"""

from __future__ import annotations

T0 = 1_750_000_000.0  # 2025-06-15T15:06:40Z, a plausible recent wall time


class Clock:
    """Returns ``now`` until a test moves it (``clock.now = t``, ``clock.now += s``, :meth:`advance`)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; the new time."""
        self.now += seconds
        return self.now
