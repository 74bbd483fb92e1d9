"""RE-STATEMENT (test helper, not package code) of how the SN27 v1.9.0 validator neuron serves Prometheus.

Written fresh from shared/reference/original-system.md section 6, bug included, so that the
registrar can be simulated beside the neuron on the fake chain:

* ``sync_status`` runs at start-up and every 25 blocks; it calls ``init_prometheus`` when the
  on-chain ``prometheus_info.version`` differs from the neuron's ``__version_as_int__``. It looks at
  the version only: the ip and port on chain never trigger anything.
* ``init_prometheus`` serves at bittensor's default axon port (8091), with the host's external IP.
* ``prometheus_extrinsic`` skips ("Prometheus already Served") when the neuron set weights within
  the last ~100 blocks (``curr_block`` rounded down to a multiple of 100, minus ``last_update``)
  and the call params equal ``{version: OWN version (the bug: compared with itself), ip, port,
  ip_type from chain}``; otherwise it submits. So a version bump with an unchanged endpoint waits
  until the weights lag by more than 100 blocks.
* A dispatch failure (``ServingRateLimitExceeded``) is logged and returned, not retried; the next
  ``sync_status`` tries again because the version still differs. Every submission pays a fee.
* Weights are set when more than 100 blocks (``weights_rate_limit``) have passed since the last.

Submissions go through :class:`fakes.substrate.FakeSubstrate` ``submit``, so the fake pallet's
serving rate limit applies to the neuron exactly as to the registrar (they share one hotkey).
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from fakes.substrate import ComposedCall, FakeSubstrate

SYNC_STATUS_BLOCKS = 25
WEIGHTS_RATE_LIMIT = 100
AXON_DEFAULT_PORT = 8091


@dataclass
class NeuronServe:
    """One ``do_serve_prometheus`` submission by the neuron, and whether the chain accepted it."""

    block: int
    version: int
    port: int
    ok: bool
    error: str | None


@dataclass
class OriginalValidatorNeuron:
    """The validator neuron's Prometheus behaviour, driven one block at a time with :meth:`step`."""

    chain: FakeSubstrate
    keypair: Any
    netuid: int
    version: int
    external_ip: str
    last_weights: int
    next_sync: int
    serves: list[NeuronServe] = field(default_factory=list)
    skipped_already_served: int = 0

    def restart(self, version: int) -> None:
        """An upgrade: the new process runs ``sync_status`` in ``__init__``, right away."""
        self.version = version
        self.next_sync = self.chain.block

    def step(self) -> None:
        """What the neuron's main loop does at the current block."""
        block = self.chain.block
        if block - self.last_weights > WEIGHTS_RATE_LIMIT:
            self.last_weights = block  # sync_scores + set_weights: neuron.last_update
        if block >= self.next_sync:
            self.next_sync = block + SYNC_STATUS_BLOCKS
            self.sync_status()

    def onchain(self) -> dict[str, int] | None:
        return self.chain.get_storage(
            "SubtensorModule", "Prometheus", [self.netuid, self.keypair.ss58_address]
        )

    def sync_status(self) -> None:
        record = self.onchain()
        onchain_version = record["version"] if record else 0  # a null prometheus_info reads 0
        if onchain_version != self.version:
            self.init_prometheus()

    def init_prometheus(self) -> None:
        self.prometheus_extrinsic(port=AXON_DEFAULT_PORT)

    def prometheus_extrinsic(self, port: int, force_update: bool = False) -> bool:
        address = ipaddress.ip_address(self.external_ip)
        call_params = {"version": self.version, "ip": int(address), "port": port, "ip_type": address.version}
        record = self.onchain()
        block = self.chain.block
        curr_block = block - (block % 100)
        last_update = curr_block - self.last_weights
        if not (last_update > 100 or force_update) and record is not None:
            seen = {
                "version": self.version,  # the bug: its own version, not record["version"]
                "ip": record["ip"],
                "port": record["port"],
                "ip_type": record["ip_type"],
            }
            if call_params == seen:
                self.skipped_already_served += 1
                return True
        return self.do_serve_prometheus({**call_params, "netuid": self.netuid})

    def do_serve_prometheus(self, call_params: dict[str, int]) -> bool:
        block = self.chain.block
        call = ComposedCall("SubtensorModule", "serve_prometheus", call_params)
        result = asyncio.run(
            self.chain.submit(call, self.keypair, wait_for_inclusion=False, wait_for_finalization=True)
        )
        name = getattr(result.error, "name", None)
        self.serves.append(
            NeuronServe(block, call_params["version"], call_params["port"], result.success, name)
        )
        return bool(result.success)
