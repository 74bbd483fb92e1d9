"""SIMULATED chain for the demo's registrar: ``python -m exporters.demo.simregistrar [registrar flags]``.

The demo has no chain, yet the registrar's dashboard panels and its dealings with the SN27
validator neuron should be seen working. This runs the real ``register-prometheus`` loop (same
flags, same Registrar, same metrics) against :class:`SimulatedChain`, an in-process stand-in for
the few ``bittensor.Client`` calls the registrar makes (``connect``, ``query``, ``block``,
``execute``, ``close``). Nothing it reports is real:

* blocks advance with the clock, one every ``OPENCOMPUTE_SIMCHAIN_BLOCK_SECONDS`` (default 1 s,
  so that the 50-block serving rate limit passes in under a minute);
* the signing hotkey holds UID 0 with a validator permit on every netuid;
* the record starts as the neuron left it long ago (version 190 at 198.51.100.10:8091), and
  after ``OPENCOMPUTE_SIMCHAIN_UPGRADE_AFTER`` blocks (default 60) the neuron "upgrades" and serves
  191 at port 8091, as the SN27 validator does when its version differs from the chain's. That one
  scripted write (not a model of the neuron) shows the registrar taking the endpoint back, keeping
  191, after waiting out the rate limit.

``serve_prometheus`` applies the pallet's rate limit (``ServingRateLimit``, 50 blocks) and
rejects with ``ServingRateLimitExceeded`` inside it, like the chain.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

ENV_PREFIX = "OPENCOMPUTE_SIMCHAIN_"
RATE_LIMIT_BLOCKS = 50
NEURON_IP = "198.51.100.10"
NEURON_PORT = 8091


@dataclass
class SimulatedChain:
    """The state shared by every client the registrar builds: blocks, registrations, records."""

    block_seconds: float = 1.0
    upgrade_after: int = 60
    start_block: int = 5_000_000
    clock: Callable[[], float] = time.monotonic
    records: dict[tuple[int, str], dict[str, int]] = field(default_factory=dict)
    started: float = field(default=0.0)
    _upgraded: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def block(self) -> int:
        return self.start_block + int((self.clock() - self.started) / self.block_seconds)

    def seed_neuron_record(self, netuid: int, hotkey: str) -> None:
        """The record as the validator neuron served it before the demo started."""
        self.records[(netuid, hotkey)] = _record(self.start_block - 10_000, 190, NEURON_IP, NEURON_PORT)

    def tick(self) -> None:
        """Apply the scripted neuron upgrade once its block has come (and the rate limit allows)."""
        with self._lock:
            if self._upgraded or self.block < self.start_block + self.upgrade_after:
                return
            for key, record in self.records.items():
                if self.block - record["block"] >= RATE_LIMIT_BLOCKS:
                    self.records[key] = _record(self.block, 191, NEURON_IP, NEURON_PORT)
                    self._upgraded = True
                    log.warning("SIMULATED neuron upgrade: served version 191 at port %d", NEURON_PORT)

    def serve(self, netuid: int, hotkey: str, version: int, ip: str, port: int) -> str | None:
        """``serve_prometheus``: None when stored, else the pallet's error name."""
        with self._lock:
            previous = self.records.get((netuid, hotkey))
            if previous is not None and self.block - previous["block"] < RATE_LIMIT_BLOCKS:
                return "ServingRateLimitExceeded"
            self.records[(netuid, hotkey)] = _record(self.block, version, ip, port)
            return None

    def client(self) -> SimulatedClient:
        return SimulatedClient(self)


def _record(block: int, version: int, ip: str, port: int) -> dict[str, int]:
    address = ipaddress.ip_address(ip)
    return {"block": block, "version": version, "ip": int(address), "port": port, "ip_type": address.version}


class SimulatedClient:
    """The ``bittensor.Client`` calls the registrar makes, answered from :class:`SimulatedChain`."""

    def __init__(self, chain: SimulatedChain) -> None:
        self.chain = chain

    async def connect(self) -> None:
        self.chain.tick()

    async def close(self) -> None:
        return None

    async def block(self) -> int:
        return self.chain.block

    async def query(self, item: tuple[str, str], params: Sequence[Any]) -> Any:
        pallet, name = item
        if name == "Uids":
            return 0
        if name == "ValidatorPermit":
            return [True]
        if name == "ServingRateLimit":
            return RATE_LIMIT_BLOCKS
        if name == "Prometheus":
            return self.chain.records.get((int(params[0]), str(params[1])))
        raise KeyError(f"the simulated chain has no {pallet}.{name}")

    async def execute(self, intent: Any, signer: Any, **_: Any) -> Any:
        from bittensor.result import ChainError, ExtrinsicResult

        error = self.chain.serve(intent.netuid, signer.ss58_address, intent.version, intent.ip, intent.port)
        block = self.chain.block
        if error:
            return ExtrinsicResult(success=False, message=error, error=ChainError(error, error))
        return ExtrinsicResult(success=True, message="Success", extrinsic_id=f"{block}-0001")


def chain_from_env(environ: dict[str, str] | None = None) -> SimulatedChain:
    env = os.environ if environ is None else environ
    return SimulatedChain(
        block_seconds=float(env.get(ENV_PREFIX + "BLOCK_SECONDS", "1")),
        upgrade_after=int(env.get(ENV_PREFIX + "UPGRADE_AFTER", "60")),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse registrar flags exactly like ``register-prometheus`` and loop against the simulation."""
    import exporters.registrar as registrar
    from exporters import cli

    chain = chain_from_env()
    args = list(sys.argv[1:] if argv is None else argv)
    seeded: set[str] = set()

    def make_client(target: str) -> SimulatedClient:
        return chain.client()

    real_build = registrar.build_registrar

    def build(values: dict[str, Any], signer: Any, client_factory: Any = None) -> Any:
        if signer.ss58_address not in seeded:
            chain.seed_neuron_record(values["netuid"], signer.ss58_address)
            seeded.add(signer.ss58_address)
        log.warning("SIMULATED chain from exporters.demo.simregistrar: nothing is served on a real chain")
        return real_build(values, signer, client_factory)

    registrar.make_client = make_client  # the seams: everything else is the real registrar loop
    registrar.build_registrar = build
    return cli.main(["register-prometheus", *args])


if __name__ == "__main__":
    raise SystemExit(main())
