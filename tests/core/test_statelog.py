"""The once-per-change logging helper, with an injected clock."""

from __future__ import annotations

import logging

from exporters.core.statelog import StateLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_same_failure_is_logged_once_then_reminded_and_recovery_once(caplog):
    clock = Clock()
    states = StateLog(logging.getLogger("t"), remind_every=600, clock=clock)
    with caplog.at_level(logging.INFO, logger="t"):
        assert states.failing("db", "locked", "db locked")
        for _ in range(9):
            clock.now += 10
            assert not states.failing("db", "locked", "db locked")
        clock.now = 700
        assert states.failing("db", "locked", "db locked")
        assert states.failing("db", "corrupt", "db corrupt")  # a new state: logged at once
        assert states.ok("db", "db readable again")
        assert not states.ok("db", "db readable again")  # only once
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "db locked",
        "db locked (still failing since 700s, 10 times)",
        "db corrupt",
        "db readable again",
    ]


def test_keys_are_independent():
    states = StateLog(logging.getLogger("t"), clock=Clock())
    assert states.failing("a", "x", "a x")
    assert states.failing("b", "x", "b x")
    assert states.state("a") == "x" and states.state("c") is None
