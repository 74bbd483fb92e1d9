"""Who is believed: signature outcomes, staleness, the validator set and its fallbacks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from fakes.substrate import FakeSubstrate
from network_helpers import key, record

from exporters.core.signing import ENVELOPE_KEY, REJECT_REASONS
from exporters.subnet.trust import (
    BittensorChainSource,
    ChainState,
    ChainUnavailable,
    MetagraphCache,
    NeuronInfo,
    StaticValidatorSource,
    ValidatorResolver,
    validators_from,
    verify_runs,
)

NOW = 1_750_000_000.0
DAY = 86400.0


def verify(records, *, trusted=None, max_age=DAY, now=NOW, last_seq=None, role="validator"):
    return verify_runs(
        records,
        role=role,
        netuid=27,
        entity_project="neuralinternet/opencompute",
        now=now,
        max_age=max_age,
        trusted=trusted,
        last_seq={} if last_seq is None else last_seq,
    )


def test_a_valid_v2_run_is_used_for_its_signed_payload_not_its_top_level_keys():
    rec = record("//v0", "validator", {"allocated_hotkeys": ["a"]}, run_id="r1", now=NOW, top_level=False)
    rec.config["allocated_hotkeys"] = ["forged"]  # unsigned top-level copy written by someone else
    rec.config["stats"] = {"1": {}}
    out = verify([rec])
    assert [r.signature for r in out.accepted] == ["v2"]
    assert out.accepted[0].payload == {"allocated_hotkeys": ["a"]}
    assert out.accepted[0].timestamp == NOW


def test_a_run_with_only_a_v1_signature_counts_its_top_level_keys_and_is_marked_weak():
    rec = record("//v0", "validator", {"allocated_hotkeys": ["a"]}, run_id="r1", now=NOW, v2=False)
    (run,) = verify([rec]).accepted
    assert run.signature == "v1_only"
    assert run.payload["allocated_hotkeys"] == ["a"]
    assert "signature" not in run.payload


def test_content_changed_after_signing_is_rejected_even_though_v1_still_verifies():
    rec = record("//v0", "validator", {"allocated_hotkeys": ["a"]}, run_id="r1", now=NOW)
    rec.config[ENVELOPE_KEY]["payload"]["allocated_hotkeys"] = ["b"]
    out = verify([rec])
    assert out.accepted == [] and out.rejected == {"r1": "tampered"}


def test_a_run_signed_by_another_key_is_rejected():
    rec = record("//v0", "validator", {}, run_id="r1", now=NOW, v2=False)
    rec.config["hotkey"] = key("//v1").ss58_address
    assert verify([rec]).rejected == {"r1": "wrong_signature"}


def test_v2_age_comes_from_the_signed_time_not_the_store_heartbeat():
    old = record("//v0", "validator", {}, run_id="r1", now=NOW, signed_at=NOW - 2 * DAY, updated_at=NOW)
    fresh = record(
        "//v1", "validator", {}, run_id="r2", now=NOW, signed_at=NOW - 60, updated_at=NOW - 3 * DAY
    )
    out = verify([old, fresh])
    assert out.rejected == {"r1": "stale"}
    assert [r.run_id for r in out.accepted] == ["r2"]


def test_v1_age_comes_from_the_store_updated_time():
    old = record("//v0", "validator", {}, run_id="r1", now=NOW, v2=False, updated_at=NOW - 2 * DAY)
    fresh = record("//v1", "validator", {}, run_id="r2", now=NOW, v2=False, updated_at=NOW - 60)
    out = verify([old, fresh])
    assert out.rejected == {"r1": "stale"}
    assert out.signers[key("//v0").ss58_address] == NOW - 2 * DAY  # still known as a signer


def test_only_current_validators_are_trusted():
    a = record("//v0", "validator", {}, run_id="r1", now=NOW)
    b = record("//v1", "validator", {}, run_id="r2", now=NOW)
    out = verify([a, b], trusted=frozenset({key("//v0").ss58_address}))
    assert [r.run_id for r in out.accepted] == ["r1"]
    assert out.rejected == {"r2": "untrusted_validator"}


def test_an_older_envelope_replayed_after_a_newer_one_is_rejected():
    seen: dict[str, int] = {}
    verify([record("//v0", "validator", {}, run_id="r1", now=NOW, seq=9)], last_seq=seen)
    out = verify([record("//v0", "validator", {}, run_id="r1", now=NOW, seq=3)], last_seq=seen)
    assert out.rejected == {"r1": "replayed_seq"}


def test_hostile_records_are_rejected_with_bounded_reasons():
    good = record("//v0", "validator", {}, run_id="ok", now=NOW)
    broken = [
        replace(good, run_id="a", config={"hotkey": 5, "signature": "zz"}),
        replace(good, run_id="b", config={"hotkey": "5" * 48, "signature": "00" * 64}),
        replace(good, run_id="c", config={**good.config, "role": "miner"}),
        replace(good, run_id="d", config={**good.config, ENVELOPE_KEY: "garbage"}),
        replace(good, run_id="e", config={"x": float("nan")}),
    ]
    out = verify([*broken, good])
    assert [r.run_id for r in out.accepted] == ["ok"]
    assert set(out.rejected) == {"a", "b", "c", "d", "e"}
    assert set(out.rejected.values()) <= set(REJECT_REASONS)


def test_a_miner_run_claiming_an_unhashable_hotkey_is_not_registered_and_does_not_sink_the_refresh():
    # Anyone can add a run to the public project; a list or object as "hotkey" must not raise in the
    # registration lookup (which would fail every miner refresh while that run exists).
    good = record("//m0", "miner", {}, run_id="ok", now=NOW)
    hostile = [
        replace(good, run_id="list", config={"hotkey": ["5F"], "role": "miner"}),
        replace(good, run_id="dict", config={"hotkey": {"a": 1}, "role": "miner"}),
        replace(good, run_id="env", config={ENVELOPE_KEY: {"hotkey": ["5F"]}, "hotkey": [1]}),
    ]
    out = verify_runs(
        [*hostile, good],
        role="miner",
        netuid=27,
        entity_project="neuralinternet/opencompute",
        now=NOW,
        max_age=DAY,
        registered={key("//m0").ss58_address: 7},
    )
    assert [r.run_id for r in out.accepted] == ["ok"]
    assert out.rejected == {"list": "not_registered", "dict": "not_registered", "env": "not_registered"}


# --- the validator set -------------------------------------------------------------------------


def _state(*rows: tuple[str, int, bool, float]) -> ChainState:
    return ChainState(
        27, {key(uri).ss58_address: NeuronInfo(uid, permit, stake) for uri, uid, permit, stake in rows}
    )


def test_validators_need_stake_strictly_above_the_threshold_and_no_permit_like_the_original():
    rows = (
        ("//a", 0, True, 1.0e4),
        ("//b", 1, True, 9_999.9),
        ("//c", 2, False, 1e6),
        ("//d", 3, True, 10_000.5),
    )
    state = _state(*rows)
    # get_valid_validator_hotkeys: metagraph.total_stake[uid] > validator_permit_stake, no permit check
    assert validators_from(state, 1.0e4) == {key("//c").ss58_address, key("//d").ss58_address}
    assert validators_from(state, 1.0e4, require_permit=True) == {key("//d").ss58_address}


def test_the_strict_validator_set_also_requires_a_permit(tmp_path):
    source = StaticValidatorSource(_state(("//a", 0, True, 2e4), ("//c", 2, False, 1e6)))
    vset = ValidatorResolver(source, MetagraphCache(tmp_path)).resolve(27)
    assert vset.validators == {key("//a").ss58_address, key("//c").ss58_address}
    assert vset.strict_validators == {key("//a").ss58_address}


def test_the_chain_is_used_first_and_its_metagraph_is_kept_on_disk(tmp_path):
    source = StaticValidatorSource(_state(("//a", 0, True, 2e4), ("//m", 1, False, 0)))
    resolver = ValidatorResolver(source, MetagraphCache(tmp_path))
    vset = resolver.resolve(27)
    assert vset.source == "chain"
    assert vset.validators == {key("//a").ss58_address}
    assert vset.uids == {key("//a").ss58_address: 0, key("//m").ss58_address: 1}
    body = json.loads((tmp_path / "metagraph-27.json").read_text())
    assert body["neurons"][key("//m").ss58_address] == [1, False, 0]


def test_when_the_chain_is_unreachable_the_last_good_metagraph_on_disk_is_used(tmp_path):
    ValidatorResolver(StaticValidatorSource(_state(("//a", 0, True, 2e4))), MetagraphCache(tmp_path)).resolve(
        27
    )
    restarted = ValidatorResolver(StaticValidatorSource(_state(), fail=True), MetagraphCache(tmp_path))
    vset = restarted.resolve(27)
    assert vset.source == "cache"
    assert vset.validators == {key("//a").ss58_address}
    assert vset.fetched_at is not None


def test_without_chain_or_cache_the_allowlist_is_used_and_junk_lines_are_ignored(tmp_path):
    allow = tmp_path / "allow.txt"
    allow.write_text(f"# trusted\n{key('//a').ss58_address}  # NI\n\nnot-a-key\n{key('//b').ss58_address}\n")
    resolver = ValidatorResolver(
        StaticValidatorSource(_state(), fail=True),
        MetagraphCache(tmp_path / "empty"),
        allowlist_path=str(allow),
    )
    vset = resolver.resolve(27)
    assert vset.source == "allowlist"
    assert vset.validators == {key("//a").ss58_address, key("//b").ss58_address}
    assert vset.uids is None


def test_with_nothing_to_go_on_no_validator_is_trusted(tmp_path):
    resolver = ValidatorResolver(None, MetagraphCache(tmp_path), allowlist_path=str(tmp_path / "missing"))
    vset = resolver.resolve(27)
    assert (vset.source, vset.validators) == ("none", frozenset())


def test_a_corrupt_or_foreign_cache_file_is_ignored(tmp_path):
    (tmp_path / "metagraph-27.json").write_text("{not json")
    assert MetagraphCache(tmp_path).load(27) is None
    (tmp_path / "metagraph-27.json").write_text(json.dumps({"format": 1, "netuid": 1, "neurons": {}}))
    assert MetagraphCache(tmp_path).load(27) is None


def test_an_unwritable_state_dir_does_not_stop_the_chain_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    resolver = ValidatorResolver(
        StaticValidatorSource(_state(("//a", 0, True, 2e4))), MetagraphCache(blocker / "d")
    )
    assert resolver.resolve(27).source == "chain"


# --- the real bittensor 11 code path over a fake Substrate ------------------------------------


def _metagraph(rows: list[tuple[str, bool, int]]) -> dict:
    """What SubnetInfoRuntimeApi.get_metagraph decodes to (the fields bittensor's Metagraph reads)."""
    return {
        "netuid": 27,
        "block": 5_000_000,
        "tempo": 360,
        "last_step": 4_999_900,
        "blocks_since_last_step": 100,
        "owner_hotkey": rows[0][0] if rows else "",
        "owner_coldkey": "",
        "network_registered_at": 1,
        "hotkeys": [hk for hk, _, _ in rows],
        "coldkeys": ["" for _ in rows],
        "validator_permit": [permit for _, permit, _ in rows],
        "total_stake": [rao for _, _, rao in rows],
    }


@pytest.fixture
def chain(monkeypatch, tmp_path) -> FakeSubstrate:
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "symbols.json"))  # keep ~ clean
    fake = FakeSubstrate()
    rows = [
        (key("//a").ss58_address, True, 20_000 * 10**9),
        (key("//b").ss58_address, True, 500 * 10**9),
        (key("//m").ss58_address, False, 10**9),
    ]
    fake.runtime_calls[("SubnetInfoRuntimeApi", "get_metagraph")] = lambda params: (
        _metagraph(rows) if params == [27] else None
    )
    return fake


def test_the_bittensor_source_reads_permits_stakes_and_uids_through_the_sdk(chain, tmp_path):
    state = BittensorChainSource("finney", substrate=chain).fetch(27)
    assert state.block == 5_000_000
    assert state.neurons[key("//a").ss58_address] == NeuronInfo(0, True, 20_000.0)
    assert state.neurons[key("//m").ss58_address] == NeuronInfo(2, False, 1.0)
    assert chain.count("runtime_call") == 1  # one call for the whole subnet, not one per uid
    resolver = ValidatorResolver(BittensorChainSource("finney", substrate=chain), MetagraphCache(tmp_path))
    assert resolver.resolve(27).validators == {key("//a").ss58_address}


def test_a_missing_subnet_or_a_failing_chain_raise_chain_unavailable(chain):
    with pytest.raises(ChainUnavailable, match="does not exist"):
        BittensorChainSource("finney", substrate=chain).fetch(99)
    chain.fail("runtime_call", ConnectionError("socket closed"))
    with pytest.raises(ChainUnavailable):
        BittensorChainSource("finney", substrate=chain).fetch(27)


def test_a_chain_outage_falls_back_to_the_metagraph_saved_from_the_sdk_read(chain, tmp_path):
    resolver = ValidatorResolver(BittensorChainSource("finney", substrate=chain), MetagraphCache(tmp_path))
    assert resolver.resolve(27).source == "chain"
    chain.fail("runtime_call", ConnectionError("down"))
    again = ValidatorResolver(BittensorChainSource("finney", substrate=chain), MetagraphCache(tmp_path))
    vset = again.resolve(27)
    assert vset.source == "cache"
    assert vset.validators == {key("//a").ss58_address}


def test_runs_of_unregistered_hotkeys_are_rejected_before_any_signature_work():
    calls = []

    def counting_verifier(record, **kw):
        from exporters.core.signing import verify_run

        calls.append(record.run_id)
        return verify_run(record, **kw)

    ours = record("//m0", "miner", {"specs": {}}, run_id="r1", now=NOW)
    stranger = record("//m1", "miner", {"specs": {}}, run_id="r2", now=NOW)
    out = verify_runs(
        [ours, stranger],
        role="miner",
        netuid=27,
        entity_project="neuralinternet/opencompute",
        now=NOW,
        max_age=DAY,
        registered={key("//m0").ss58_address: 3},
        verifier=counting_verifier,
    )
    assert calls == ["r1"]
    assert out.rejected == {"r2": "not_registered"}
    assert [r.run_id for r in out.accepted] == ["r1"]


def test_a_hanging_chain_read_falls_back_to_the_cache_within_the_timeout(tmp_path):
    import threading
    import time

    ValidatorResolver(StaticValidatorSource(_state(("//a", 0, True, 2e4))), MetagraphCache(tmp_path)).resolve(
        27
    )
    release = threading.Event()

    class Hanging:
        calls = 0

        def fetch(self, netuid):
            Hanging.calls += 1
            release.wait(10)
            raise ChainUnavailable("released")

    resolver = ValidatorResolver(Hanging(), MetagraphCache(tmp_path), chain_timeout=0.05)
    start = time.monotonic()
    assert resolver.resolve(27).source == "cache"
    assert resolver.resolve(27).source == "cache"  # no second read while the first still hangs
    assert time.monotonic() - start < 2 and Hanging.calls == 1
    release.set()
