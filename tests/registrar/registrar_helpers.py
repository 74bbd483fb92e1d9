"""Shared values and small helpers for the registrar tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import ipaddress

from exporters.registrar.record import Target

NETUID = 27
PUBLIC_IP = "203.0.113.7"  # TEST-NET-3: is_global is False for it in Python, so tests pass it explicitly


class FakeClock:
    """Monotonic time that only moves when the registrar sleeps: retries take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def desired(
    ip: str = PUBLIC_IP, port: int | None = 9928, version: int | None = 10, netuid: int = NETUID
) -> Target:
    """What to publish; ``version``/``port`` None leave them to the chain and the role."""
    return Target(netuid, ipaddress.ip_address(ip), port, version)
