"""A SIMULATED subnet chain for the demo: the metagraph moves (blocks, epochs, emission, weights).

There is no chain in the demo, so the network exporter's chain collector reads this instead,
through the same seam as production (:class:`exporters.network.chain.ChainReader` takes anything
with ``read(netuid, coldkeys)``, here :meth:`SimulatedChain.read`). The neurons are the
simulation's metagraph (the :class:`~exporters.subnet.trust.ChainState` the demo already writes for
validator trust), so registrations, permits and stakes agree with the network view. On top:

- blocks advance with wall time (``block_seconds``, 1 s by default: a "fast blocks" chain), and
  an epoch runs every ``tempo`` blocks;
- at each epoch every miner's incentive and every validator's dividends take a new value from
  a seeded random walk, and the epoch's alpha emission is split by them, so emission moves;
- validators set weights every few blocks; registration blocks are spread so that a few uids are
  still immune.

Everything is a pure function of (seed, block), so two readers (or a restarted exporter) agree.
Meant to be shared by other demo parts that need a chain (e.g. a registrar writing Prometheus
records: :attr:`SimulatedChain.prometheus` holds them per hotkey).

``python -m exporters.demo.simchain [network flags]`` runs the real network exporter with this
chain; the metagraph comes from ``--network.state-dir`` (what the demo writes).
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RAO = 10**9
U16_MAX = 65535


@dataclass
class SimulatedChain:
    """A subnet whose metagraph is computed from (seed, current block); see the module docstring."""

    neurons: Mapping[str, Any]  # hotkey -> exporters.subnet.trust.NeuronInfo (uid, permit, stake)
    netuid: int = 27
    seed: int = 27
    tempo: int = 60
    immunity_period: int = 600
    block_seconds: float = 1.0
    start_block: int = 4_000_000
    epoch_emission_alpha: float = 148.0  # ~0.41 alpha/block to miners and validators, x 360 blocks
    clock: Callable[[], float] = time.time
    prometheus: dict[str, dict[str, int]] = field(default_factory=dict)
    started_at: float = field(default=0.0)

    def __post_init__(self) -> None:
        if not self.started_at:
            self.started_at = self.clock()
        self._by_uid = sorted(self.neurons.items(), key=lambda item: item[1].uid)
        self._coldkeys = {hk: self._coldkey(hk) for hk, _ in self._by_uid}

    # -- the chain's state at the current block ---------------------------------------------------

    @property
    def block(self) -> int:
        return self.start_block + int((self.clock() - self.started_at) / self.block_seconds)

    def _rng(self, *key: object) -> random.Random:
        return random.Random(f"{self.seed}:" + ":".join(str(k) for k in key))

    def _coldkey(self, hotkey: str) -> str:
        return coldkey_of(self.neurons[hotkey].uid)

    def _score(self, uid: int, epoch: int) -> float:
        """A slow seeded random walk in 0..1: the uid's performance at an epoch."""
        base = self._rng("base", uid).uniform(0.2, 1.0)
        wobble = sum(
            self._rng("step", uid, e).uniform(-0.08, 0.08) for e in range(max(0, epoch - 8), epoch + 1)
        )
        drift = 0.15 * math.sin((epoch + uid) / 5.0)
        return min(1.0, max(0.0, base + wobble + drift))

    def metagraph(self) -> dict[str, Any]:
        """``SubnetInfoRuntimeApi.get_metagraph`` as bittensor's transport decodes it."""
        block = self.block
        epoch = (block - self.start_block) // self.tempo
        miners = [(hk, n) for hk, n in self._by_uid if not n.permit]
        validators = [(hk, n) for hk, n in self._by_uid if n.permit]
        incentive = self._shares([self._score(n.uid, epoch) for _, n in miners])
        dividends = self._shares([self._score(n.uid, epoch) * n.stake for _, n in validators])
        by_uid: dict[int, dict[str, float]] = {}
        for (_, n), share in zip(miners, incentive, strict=True):
            by_uid[n.uid] = {"incentive": share, "dividends": 0.0, "emission": share * 0.5}
        for (_, n), share in zip(validators, dividends, strict=True):
            by_uid[n.uid] = {"incentive": 0.0, "dividends": share, "emission": share * 0.5}
        columns: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        for hotkey, n in self._by_uid:
            uid, scores = n.uid, by_uid[n.uid]
            rng = self._rng("neuron", uid)
            registered = block - rng.randrange(50, 20 * self.immunity_period)
            weights_every = rng.randrange(5, 20)
            columns["hotkeys"].append(hotkey)
            columns["coldkeys"].append(self._coldkeys[hotkey])
            columns["identities"].append(None)
            columns["axons"].append(
                {
                    "block": registered,
                    "version": 190,
                    "ip": 0x0A000000 + uid + 1,
                    "port": 8091,
                    "ip_type": 4,
                    "protocol": 4,
                    "placeholder1": 0,
                    "placeholder2": 0,
                }
            )
            columns["active"].append(True)
            columns["validator_permit"].append(bool(n.permit))
            columns["pruning_score"].append(_u16(scores["emission"] * 2 if n.permit else scores["incentive"]))
            columns["last_update"].append(block - block % weights_every if n.permit else registered)
            columns["emission"].append(int(scores["emission"] * self.epoch_emission_alpha * RAO))
            columns["dividends"].append(_u16(scores["dividends"]))
            columns["incentives"].append(_u16(scores["incentive"]))
            columns["consensus"].append(_u16(self._score(uid, epoch) * 0.9))
            columns["trust"].append(_u16(min(1.0, self._score(uid, epoch) + 0.1)))
            columns["rank"].append(_u16(scores["incentive"]))
            columns["block_at_registration"].append(registered)
            columns["alpha_stake"].append(int(n.stake * RAO))
            columns["tao_stake"].append(0)
            columns["total_stake"].append(int(n.stake * RAO))
        return {
            "netuid": self.netuid,
            "name": list(b"compute"),
            "symbol": list("\u03ba".encode()),
            "block": block,
            "tempo": self.tempo,
            "last_step": block - (block - self.start_block) % self.tempo,
            "blocks_since_last_step": (block - self.start_block) % self.tempo,
            "immunity_period": self.immunity_period,
            "num_uids": len(self._by_uid),
            "max_uids": 256,
            "owner_hotkey": self._by_uid[0][0] if self._by_uid else "",
            "owner_coldkey": self._coldkeys[self._by_uid[0][0]] if self._by_uid else "",
            "network_registered_at": 1,
            **columns,
        }

    @staticmethod
    def _shares(weights: Sequence[float]) -> list[float]:
        total = sum(weights)
        return [w / total if total else 0.0 for w in weights]

    def validator_trust(self) -> list[int]:
        """``SubtensorModule.ValidatorTrust[netuid]``: raw u16 per uid."""
        epoch = (self.block - self.start_block) // self.tempo
        return [_u16(0.8 + 0.2 * self._score(n.uid, epoch)) if n.permit else 0 for _, n in self._by_uid]

    def prometheus_rows(self) -> list[tuple[str, dict[str, int]]]:
        """``SubtensorModule.Prometheus`` for the netuid: (hotkey, PrometheusInfo) pairs."""
        return sorted(self.prometheus.items())

    def owned_hotkeys(self, coldkey: str) -> list[str]:
        """``SubtensorModule.OwnedHotkeys[coldkey]``."""
        return [hk for hk, ck in self._coldkeys.items() if ck == coldkey]

    # -- the chain collector's seam ---------------------------------------------------------------

    def read(self, netuid: int, coldkeys: Sequence[str]) -> tuple[Any, Any, Any, list[Any]]:
        """What :meth:`exporters.network.chain.ChainClient.read` returns, from the simulation."""
        if netuid != self.netuid:
            from exporters.network.chain import ChainReadError

            raise ChainReadError("no_subnet", f"the simulated chain has netuid {self.netuid} only")
        return (
            self.metagraph(),
            self.validator_trust(),
            self.prometheus_rows(),
            [self.owned_hotkeys(ck) for ck in coldkeys],
        )


_COLUMNS = (
    "hotkeys",
    "coldkeys",
    "identities",
    "axons",
    "active",
    "validator_permit",
    "pruning_score",
    "last_update",
    "emission",
    "dividends",
    "incentives",
    "consensus",
    "trust",
    "rank",
    "block_at_registration",
    "alpha_stake",
    "tao_stake",
    "total_stake",
)


def coldkey_of(uid: int) -> str:
    """The simulated owner of a uid: four consecutive uids share a coldkey, as operators' do."""
    from bittensor_core import Keypair

    return Keypair.create_from_uri(f"//simchain-coldkey-{uid // 4}").ss58_address


def _u16(fraction: float) -> int:
    return max(0, min(U16_MAX, round(fraction * U16_MAX)))


def from_values(values: Mapping[str, Any]) -> SimulatedChain:
    """The simulated chain of the metagraph the demo saved in ``--network.state-dir``."""
    import os

    from exporters.subnet.trust import MetagraphCache

    netuid = int(values.get("netuid", 27))
    state_dir = values.get("network_state_dir")
    state = MetagraphCache(os.path.expanduser(state_dir) if state_dir else None).load(netuid)
    if state is None:
        raise SystemExit(
            f"exporters.demo.simchain: no simulated metagraph for netuid {netuid} in {state_dir}"
        )
    log.warning(
        "SIMULATED chain (%d neurons) from exporters.demo.simchain: not the real subnet", len(state.neurons)
    )
    return SimulatedChain(state.neurons, netuid=netuid)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse network flags exactly like ``opencompute-exporter network`` and read the simulated chain."""
    from exporters import cli
    from exporters.network import cli as network_cli

    network_cli.chain_client = from_values  # the one seam: everything else is the real exporter
    args = list(sys.argv[1:] if argv is None else argv)
    return cli.main(["network", *args])


if __name__ == "__main__":
    raise SystemExit(main())
