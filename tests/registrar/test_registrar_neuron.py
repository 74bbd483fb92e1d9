"""The registrar loop beside the original SN27 validator neuron, on one fake chain, for 1,000 blocks.

Both sign with the validator's hotkey and share the record and its serving rate limit (50 blocks
here). The neuron is the re-statement in ``sn27_neuron.py`` (version-only trigger, port 8091, the
"version compared with itself" skip). The registrar is the real one in loop mode (keeps the
on-chain version, publishes our ip and port 9928, waits out the rate limit), ticking every
10 minutes (50 blocks) or sooner when a rate-limit wait ends. Blocks advance one at a time; each
submission is attributed to the last event before it.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from registrar_helpers import NETUID, desired
from sn27_neuron import AXON_DEFAULT_PORT, OriginalValidatorNeuron

from exporters.registrar.record import Target
from exporters.registrar.service import BLOCK_SECONDS, Outcome

IP_A = "198.51.100.10"
IP_B = "198.51.100.20"
START = 10_000
INTERVAL_S = 600.0  # --registrar.interval 10m


@dataclass
class Sim:
    """Drives neuron and registrar block by block and logs every submission as (event, who, ok)."""

    chain: object
    neuron: OriginalValidatorNeuron
    registrar: object | None
    host: dict
    events: list[tuple[int, str, Callable[[], None]]] = field(default_factory=list)
    log: list[tuple[int, str, str, bool]] = field(default_factory=list)  # block, event, who, ok
    writes: list[tuple[int, int, int, int]] = field(default_factory=list)  # block, version, ip, port

    def run(self, blocks: int, registrar_from: int) -> None:
        chain, end = self.chain, self.chain.block + blocks
        pending = sorted(self.events, key=lambda e: e[0])
        event, next_tick = "initial", registrar_from
        while chain.block < end:
            while pending and pending[0][0] <= chain.block:
                _, event, action = pending.pop(0)
                action()
            self._neuron_step(event)
            if self.registrar is not None and chain.block >= next_tick:
                before = len(chain.submissions)
                result = self.registrar.run_once()
                for _ in chain.submissions[before:]:
                    self.log.append((chain.block, event, "ours", result.outcome is Outcome.SERVED))
                self._note_write()
                next_tick = chain.block + math.ceil(
                    self.registrar.next_delay(INTERVAL_S, result) / BLOCK_SECONDS
                )
            chain.advance(1)

    def _neuron_step(self, event: str) -> None:
        before = len(self.neuron.serves)
        self.neuron.step()
        for serve in self.neuron.serves[before:]:
            self.log.append((serve.block, event, "neuron", serve.ok))
        self._note_write()

    def _note_write(self) -> None:
        record = self.record()
        if record and (not self.writes or self.writes[-1][0] != record["block"]):
            self.writes.append((record["block"], record["version"], record["ip"], record["port"]))

    def record(self) -> dict | None:
        return self.chain.get_storage(
            "SubtensorModule", "Prometheus", [NETUID, self.neuron.keypair.ss58_address]
        )

    def counts(self) -> Counter:
        """Submissions per (event, who), failed ones included: each pays a fee."""
        return Counter((event, who) for _, event, who, _ in self.log)


def put_neuron_record(chain, hotkey, *, version: int, ip: str, block: int) -> None:
    chain.set_storage(
        "SubtensorModule",
        "Prometheus",
        [NETUID, hotkey.ss58_address],
        {"block": block, "version": version, "ip": int(ipaddress.ip_address(ip)), "port": 8091, "ip_type": 4},
    )


def build(chain, hotkey, make_registrar, *, version: int | None = None, with_registrar: bool = True) -> Sim:
    """The neuron at v1.9.0 (190), having served long ago; our registrar keeping its version."""
    chain.block = START
    put_neuron_record(chain, hotkey, version=190, ip=IP_A, block=START - 5_000)
    neuron = OriginalValidatorNeuron(
        chain, hotkey, NETUID, version=190, external_ip=IP_A, last_weights=START - 40, next_sync=START + 7
    )
    host = {"ip": IP_A}

    def target() -> Target:
        return desired(ip=host["ip"], port=None, version=version)

    registrar = make_registrar(target=target, wait_rate_limit=True) if with_registrar else None
    return Sim(chain, neuron, registrar, host)


def change_ip(sim: Sim, ip: str) -> Callable[[], None]:
    def act() -> None:
        sim.host["ip"] = ip
        sim.neuron.external_ip = ip

    return act


def test_neuron_upgrade_and_ip_change_cost_one_serve_each_and_converge(chain, hotkey, make_registrar):
    sim = build(chain, hotkey, make_registrar)
    sim.events = [
        (START + 300, "upgrade", lambda: sim.neuron.restart(191)),
        (START + 650, "ip_change", change_ip(sim, IP_B)),
    ]

    sim.run(1_000, registrar_from=START + 3)

    counts = sim.counts()
    print("\nserves per (event, side):", dict(counts), "writes:", sim.writes)
    # Our start-up takes the endpoint over once; the neuron does nothing (the version is its own).
    assert counts[("initial", "ours")] == 1 and counts[("initial", "neuron")] == 0
    # The upgrade: the neuron serves 191 at 8091 once, we put our endpoint back once, keeping 191.
    assert counts[("upgrade", "neuron")] == 1 and counts[("upgrade", "ours")] == 1
    # The IP change: only we serve; the neuron compares the version only.
    assert counts[("ip_change", "ours")] == 1 and counts[("ip_change", "neuron")] == 0
    assert all(ok for *_, ok in sim.log), "no submission may be rejected (rate limit included)"
    record = sim.record()
    assert (record["version"], record["ip"], record["port"]) == (191, int(ipaddress.ip_address(IP_B)), 9928)
    # Converged: nothing is written after the IP change has been served.
    last_write = sim.writes[-1][0]
    assert last_write < START + 700 and chain.block - last_write > 250
    assert [port for *_, port in sim.writes[-3:]] == [AXON_DEFAULT_PORT, 9928, 9928]
    # The rate limit was waited out, never submitted into.
    snap = sim.registrar.state.snapshot()
    assert snap["outcomes"]["waiting_rate_limit"] >= 1 and snap["outcomes"]["rate_limited"] == 0
    assert snap["serves"] == {**dict.fromkeys(snap["serves"], 0), "neuron_reserved": 2, "ip": 1}
    assert snap["changes"] == {"neuron": 1, "other": 0}
    assert snap["owner"].value == "ours" and snap["onchain"].version == 191


def test_publishing_a_version_of_our_own_fights_the_neuron_every_cycle(chain, hotkey, make_registrar):
    # What the old default (the suite's version, 10) does on a validator hotkey: the evidence that
    # the version must be kept. The two alternate for as long as both run, and about half of the
    # neuron's attempts land inside the rate limit our serves start (rejected, fee paid).
    sim = build(chain, hotkey, make_registrar, version=10)

    sim.run(1_000, registrar_from=START + 3)

    counts = sim.counts()
    rejected = sum(1 for *_, ok in sim.log if not ok)
    print("\nown-version serves:", dict(counts), "rejected:", rejected)
    assert counts[("initial", "ours")] >= 8 and counts[("initial", "neuron")] >= 16
    versions = [version for _, version, _, _ in sim.writes[-6:]]
    assert versions in ([10, 190] * 3, [190, 10] * 3), versions


def test_without_the_registrar_the_neuron_bug_keeps_its_upgrade_off_chain(chain, hotkey, make_registrar):
    # Baseline: the neuron alone, the record at its own endpoint. While it sets weights on time,
    # "last_update" (rounded down to a multiple of 100) never exceeds 100, so the self-comparison
    # reports "already served" every 25 blocks and 191 never reaches the chain in 700 blocks.
    # With our endpoint on the record the same upgrade lands at once (first test): the port differs.
    sim = build(chain, hotkey, make_registrar, with_registrar=False)
    sim.events = [(START + 300, "upgrade", lambda: sim.neuron.restart(191))]

    sim.run(1_000, registrar_from=0)

    print("\nneuron alone:", dict(sim.counts()), "skipped:", sim.neuron.skipped_already_served)
    assert sim.counts()[("upgrade", "neuron")] == 0
    assert sim.neuron.skipped_already_served == 28  # one per sync_status from block 10,300 on
    assert sim.record()["version"] == 190


def test_an_ip_change_just_before_an_upgrade_still_converges_without_alternating(
    chain, hotkey, make_registrar
):
    # The one interleaving that costs the neuron extra attempts: our serve for the new IP starts
    # the rate-limit window just before the neuron wants to serve its new version. Its rejected
    # attempts (each a fee) stop when the window ends; then one serve each, and quiet.
    sim = build(chain, hotkey, make_registrar)
    sim.events = [
        (START + 400, "ip_change", change_ip(sim, IP_B)),
        (START + 410, "upgrade", lambda: sim.neuron.restart(191)),
    ]

    sim.run(1_000, registrar_from=START + 3)

    counts = sim.counts()
    rejected = [entry for entry in sim.log if not entry[3]]
    print("\ncoincident:", dict(counts), "rejected:", rejected)
    assert all(who == "neuron" for _, _, who, _ in rejected), "we never submit into the rate limit"
    assert len(rejected) <= 2  # 50-block window / 25-block sync_status
    assert counts[("upgrade", "ours")] == 1
    assert sum(1 for _, event, who, ok in sim.log if event == "upgrade" and who == "neuron" and ok) == 1
    record = sim.record()
    assert (record["version"], record["port"]) == (191, 9928)
    assert chain.block - sim.writes[-1][0] > 400
