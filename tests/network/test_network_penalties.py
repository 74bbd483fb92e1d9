"""Listed vs enforced penalties: only a penalty authority's verified checklist costs a miner rewards.

The original v1.9.0 validator zeroes the score of the miners on ``penalized_hotkeys_checklist``
published by one hardcoded validator hotkey (NI's), accepted on its v1 signature alone and
compared as plain strings; every other penalty list is informational. The strict reading also
asks the authority to be a trusted validator with an intact v2 envelope, and reads both shapes.
"""

from __future__ import annotations

import argparse

import pytest
from helpers.clock import Clock
from network_helpers import key, record

from exporters.core.config import ConfigError
from exporters.core.signing import ENVELOPE_KEY
from exporters.network import cli
from exporters.network.collectors import PenaltiesCollector
from exporters.network.refresh import NetworkRefresher
from exporters.network.simulate import LOW_STAKE, VALIDATOR_STAKE, MemoryStateStore
from exporters.subnet.trust import (
    ChainState,
    MetagraphCache,
    NeuronInfo,
    StaticValidatorSource,
    ValidatorResolver,
)
from exporters.subnet.views import NI_PENALTY_AUTHORITY

AUTHORITY, OTHER, LOW = "//validator0", "//validator1", "//validator-lowstake"
MINERS = [key(f"//miner{i}").ss58_address for i in range(6)]
CHECKLIST, PLAIN = "penalized_hotkeys_checklist", "penalized_hotkeys"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStateStore:
    return MemoryStateStore(clock=clock)


def refresher(store: MemoryStateStore, clock: Clock, tmp_path, authorities=None) -> NetworkRefresher:
    neurons = {
        key(AUTHORITY).ss58_address: NeuronInfo(0, True, VALIDATOR_STAKE),
        key(OTHER).ss58_address: NeuronInfo(1, True, VALIDATOR_STAKE),
        key(LOW).ss58_address: NeuronInfo(2, True, LOW_STAKE),
        **{hk: NeuronInfo(3 + i, False, 0.0) for i, hk in enumerate(MINERS)},
    }
    source = StaticValidatorSource(ChainState(27, neurons, 1, clock()), clock=clock)
    resolver = ValidatorResolver(source, MetagraphCache(tmp_path / "state"))
    wanted = (key(AUTHORITY).ss58_address,) if authorities is None else authorities
    return NetworkRefresher(store, resolver, clock=clock, timer=lambda: 0.0, penalty_authorities=wanted)


def publish(store: MemoryStateStore, clock: Clock, uri: str, payload: dict, run_id: str):
    rec = record(uri, "validator", payload, run_id=run_id, now=clock(), created_at=clock())
    store.put(rec)
    return rec


def scrape(r: NetworkRefresher) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) -> value, straight from the collector's families."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in PenaltiesCollector(lambda: r.snapshot).collect()
        for s in family.samples
    }


def test_the_network_enforces_plain_checklist_hotkeys_and_the_strict_reading_both_shapes(
    store, clock, tmp_path
):
    publish(
        store,
        clock,
        AUTHORITY,
        {CHECKLIST: [{"hotkey": MINERS[0], "status_code": "PORT_CLOSED", "description": "x"}, MINERS[1]]},
        "auth",
    )
    r = refresher(store, clock, tmp_path)
    assert r.refresh("validator")
    view = r.snapshot.penalties
    assert view.enforced == {MINERS[1]}  # v1.9.0: ``hotkey in list`` never equals a dict entry
    assert view.authority_seen is True
    assert view.listed[MINERS[0]] == {(CHECKLIST, "PORT_CLOSED")}
    assert r.snapshot.divergence.counts["penalty"] == 1  # the strict reading enforces MINERS[0] too
    samples = scrape(r)
    assert samples[("opencompute_network_miner_penalty_enforced", (("hotkey", MINERS[1]),))] == 1
    assert samples[("opencompute_network_miners_penalty_enforced", ())] == 1
    assert samples[("opencompute_network_penalty_authority_seen", ())] == 1
    key0 = (("hotkey", MINERS[0]), ("list", CHECKLIST), ("status_code", "PORT_CLOSED"))
    assert samples[("opencompute_network_miner_penalized", key0)] == 1


def test_penalties_from_other_validators_or_the_authoritys_plain_list_are_listed_but_not_enforced(
    store, clock, tmp_path
):
    publish(store, clock, AUTHORITY, {PLAIN: [MINERS[2]]}, "auth")
    publish(store, clock, OTHER, {PLAIN: [MINERS[3]], CHECKLIST: [MINERS[4]]}, "other")
    r = refresher(store, clock, tmp_path)
    assert r.refresh("validator")
    view = r.snapshot.penalties
    assert view.enforced == frozenset()
    assert view.authority_seen is True
    assert dict(view.listed) == {
        MINERS[2]: {(PLAIN, "")},
        MINERS[3]: {(PLAIN, "")},
        MINERS[4]: {(CHECKLIST, "")},
    }
    samples = scrape(r)
    assert samples[("opencompute_network_miners_penalized", ())] == 3
    assert samples[("opencompute_network_miners_penalty_enforced", ())] == 0
    assert not [k for k in samples if k[0] == "opencompute_network_miner_penalty_enforced"]


def test_the_same_listing_from_several_validators_is_one_series_per_hotkey_status_code_and_list(
    store, clock, tmp_path
):
    entry = {"hotkey": MINERS[0], "status_code": "SSH_ACCESS_DISABLED"}
    publish(store, clock, AUTHORITY, {CHECKLIST: [entry, entry], PLAIN: [MINERS[0]]}, "auth")
    publish(store, clock, OTHER, {CHECKLIST: [entry], PLAIN: [MINERS[0]]}, "other")
    r = refresher(store, clock, tmp_path)
    assert r.refresh("validator")
    series = sorted(k[1] for k in scrape(r) if k[0] == "opencompute_network_miner_penalized")
    assert series == [
        (("hotkey", MINERS[0]), ("list", PLAIN), ("status_code", "")),
        (("hotkey", MINERS[0]), ("list", CHECKLIST), ("status_code", "SSH_ACCESS_DISABLED")),
    ]


def test_an_authority_run_altered_after_signing_is_enforced_by_the_network_but_not_the_strict_reading(
    store, clock, tmp_path
):
    rec = publish(store, clock, AUTHORITY, {CHECKLIST: [MINERS[0]]}, "auth")
    rec.config[ENVELOPE_KEY]["payload"][CHECKLIST].append(MINERS[1])  # a forged addition
    publish(store, clock, OTHER, {CHECKLIST: [MINERS[2]]}, "other")
    r = refresher(store, clock, tmp_path)
    assert r.refresh("validator")
    view = r.snapshot.penalties
    assert view.enforced == {MINERS[0]}  # the original reads the top level, on the v1 signature
    assert view.authority_seen is True
    assert set(view.listed) == {MINERS[0], MINERS[2]}
    assert r.snapshot.rejected[("validator", "tampered")] == 1
    div = r.snapshot.divergence
    assert div.counts["penalty"] == 1
    assert div.validators[key(AUTHORITY).ss58_address] == ("tampered",)


def test_an_authority_below_the_stake_rule_is_enforced_by_the_network_but_not_the_strict_reading(
    store, clock, tmp_path
):
    publish(store, clock, LOW, {CHECKLIST: [MINERS[0]]}, "low")
    r = refresher(store, clock, tmp_path, authorities=(key(LOW).ss58_address,))
    assert r.refresh("validator")
    assert r.snapshot.penalties.enforced == {MINERS[0]}  # _bak trusts its hardcoded hotkey as such
    assert r.snapshot.penalties.authority_seen is True
    assert r.snapshot.penalties.listed == {}  # listing needs a trusted validator
    assert r.snapshot.divergence.counts["penalty"] == 1
    assert scrape(r)[("opencompute_network_penalty_authority_seen", ())] == 1


def test_lifting_the_authoritys_penalty_ends_the_enforcement(store, clock, tmp_path):
    publish(store, clock, AUTHORITY, {CHECKLIST: [MINERS[0], MINERS[1]]}, "auth")
    r = refresher(store, clock, tmp_path)
    assert r.refresh("validator")
    clock.advance(60)
    store.put(record(AUTHORITY, "validator", {CHECKLIST: [MINERS[1]]}, run_id="auth", now=clock(), seq=2))
    assert r.refresh("validator")
    assert r.snapshot.penalties.enforced == {MINERS[1]}


def resolve(argv: list[str], env: dict[str, str] | None = None) -> dict:
    flagset = cli.flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args(argv), environ=env or {})


def test_the_penalty_authority_defaults_to_the_hotkey_the_original_hardcodes():
    assert resolve([])["network_penalty_authority"] == (NI_PENALTY_AUTHORITY,)
    assert NI_PENALTY_AUTHORITY == "5GmvyePN9aYErXBBhBnxZKGoGk4LKZApE4NkaSzW62CYCYNA"


def test_the_penalty_authority_flag_takes_a_deduplicated_list_from_flag_or_environment():
    a, b = key(AUTHORITY).ss58_address, key(OTHER).ss58_address
    assert resolve([f"--network.penalty-authority={a}, {b},{a}"])["network_penalty_authority"] == (a, b)
    env = {"OPENCOMPUTE_NETWORK_PENALTY_AUTHORITY": b}
    assert resolve([], env)["network_penalty_authority"] == (b,)


def test_bad_penalty_authorities_are_all_reported_at_startup_with_the_other_problems():
    corrupt = NI_PENALTY_AUTHORITY[:-1] + "B"  # checksum no longer matches
    with pytest.raises(ConfigError) as err:
        resolve([f"--network.penalty-authority=nope,{corrupt}", "--netuid", "x"])
    problems = err.value.problems
    assert len(problems) == 3
    assert any("'nope' is not an ss58 address" in p for p in problems)
    assert any(f"{corrupt!r} is not an ss58 address" in p for p in problems)
    with pytest.raises(ConfigError, match="at least one"):
        resolve(["--network.penalty-authority= , "])


def test_build_exporter_passes_the_authorities_to_the_refresher(tmp_path, clock):
    a = key(AUTHORITY).ss58_address
    values = resolve(["--network.state-dir", str(tmp_path), f"--network.penalty-authority={a}"])
    parts = cli.build_exporter(values, store=MemoryStateStore(clock=clock), source=None)
    assert parts.refresher.penalty_authorities == {a}
