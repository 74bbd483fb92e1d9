"""The demo's simulated chain: the real chain collector reads it, and emissions move per epoch."""

from __future__ import annotations

import pytest
from bittensor_core import Keypair

from exporters.demo.simchain import SimulatedChain
from exporters.network.chain import ChainReader
from exporters.network.ours import OurHotkeys
from exporters.subnet.trust import NeuronInfo


def _neurons(count: int = 8) -> dict[str, NeuronInfo]:
    return {
        Keypair.create_from_uri(f"//sim{uid}").ss58_address: NeuronInfo(
            uid, uid < 2, 2e4 if uid < 2 else 10.0
        )
        for uid in range(count)
    }


def test_the_chain_collector_reads_the_simulation_and_emission_moves_every_epoch():
    now = [1_000.0]
    sim = SimulatedChain(_neurons(), tempo=10, block_seconds=1.0, clock=lambda: now[0])
    reader = ChainReader(sim, 27, clock=lambda: now[0])
    assert reader.refresh()
    first = {n.uid: n.emission_alpha for n in reader.view.neurons}
    assert len(first) == 8 and all(value > 0 for value in first.values())
    assert sum(first.values()) == pytest.approx(sim.epoch_emission_alpha, rel=1e-6)
    now[0] += 3  # same epoch: same emission
    reader.refresh()
    assert {n.uid: n.emission_alpha for n in reader.view.neurons} == first
    now[0] += 30  # three epochs later
    reader.refresh()
    later = {n.uid: n.emission_alpha for n in reader.view.neurons}
    assert later != first
    assert reader.view.block == sim.start_block + 33
    validators = [n for n in reader.view.neurons if n.validator_permit]
    assert len(validators) == 2 and all(n.dividends > 0 and n.validator_trust > 0 for n in validators)
    assert all(reader.view.block - n.last_update < 20 for n in validators)


def test_the_simulation_is_a_function_of_the_block_and_owns_hotkeys_by_coldkey():
    now = [5_000.0]
    a = SimulatedChain(_neurons(), clock=lambda: now[0], started_at=4_000.0)
    b = SimulatedChain(_neurons(), clock=lambda: now[0], started_at=4_000.0)
    assert a.metagraph() == b.metagraph()
    coldkey = a.metagraph()["coldkeys"][0]
    ours = OurHotkeys()
    reader = ChainReader(a, 27, our_coldkeys=(coldkey,), ours=ours)
    assert reader.refresh()
    assert {hk for hk, src in ours.items() if src == "coldkey"} == set(a.owned_hotkeys(coldkey))
    assert len(a.owned_hotkeys(coldkey)) == 4


def test_another_netuid_is_no_subnet():
    reader = ChainReader(SimulatedChain(_neurons()), 3)
    assert not reader.refresh()
    assert reader.snapshot()[1].failures["no_subnet"] == 1
