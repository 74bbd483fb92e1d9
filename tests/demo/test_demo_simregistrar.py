"""The demo's SIMULATED chain drives the real Registrar through a take-over, an upgrade and a wait."""

from __future__ import annotations

import ipaddress

from bittensor_core import Keypair

from exporters.demo.simregistrar import NEURON_PORT, SimulatedChain
from exporters.registrar.record import Owner, Target
from exporters.registrar.service import Outcome, Registrar


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_registrar_takes_the_endpoint_over_and_back_after_the_scripted_upgrade():
    clock = Clock()
    chain = SimulatedChain(block_seconds=1.0, upgrade_after=60, clock=clock)
    key = Keypair.create_from_uri("//validator")
    chain.seed_neuron_record(27, key.ss58_address)
    registrar = Registrar(
        signer=key,
        client_factory=chain.client,
        target=lambda: Target(27, ipaddress.ip_address("203.0.113.27")),
        wait_rate_limit=True,
    )

    assert registrar.run_once().outcome is Outcome.SERVED  # keeps 190, our port 9928
    clock.now = 61.0
    waiting = registrar.run_once()  # the neuron served 191 at 8091 on this connect
    assert waiting.outcome is Outcome.WAITING_RATE_LIMIT
    assert chain.records[(27, key.ss58_address)]["port"] == NEURON_PORT
    clock.now = 61.0 + 50
    assert registrar.run_once().outcome is Outcome.SERVED

    record = chain.records[(27, key.ss58_address)]
    assert (record["version"], record["port"]) == (191, 9928)
    snap = registrar.state.snapshot()
    assert snap["serves"]["neuron_reserved"] == 2 and snap["changes"]["neuron"] == 1
    assert snap["owner"] is Owner.OURS


def test_the_simulated_pallet_rejects_a_serve_inside_the_rate_limit():
    clock = Clock()
    chain = SimulatedChain(clock=clock)
    assert chain.serve(27, "5F", 190, "203.0.113.1", 9928) is None
    clock.now = 10.0
    assert chain.serve(27, "5F", 190, "203.0.113.2", 9928) == "ServingRateLimitExceeded"
