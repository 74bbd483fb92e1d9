"""The chain collector: the subnet's neurons read through bittensor 11 over a fake ``Substrate``."""

from __future__ import annotations

import time

import pytest
from bittensor_core import Keypair
from fakes.substrate import HANG, FakeNeuron, FakeSubstrate, install_subnet
from helpers.promtool import check_metrics
from prometheus_client import CollectorRegistry, generate_latest

from exporters.core.collector import ScrapeCollector
from exporters.network.chain import ChainClient, ChainCollector, ChainReader
from exporters.network.ours import OurHotkeys

NETUID = 27


def ss58(uri: str) -> str:
    return Keypair.create_from_uri(uri).ss58_address


COLD = ss58("//cold")
OTHER_COLD = ss58("//other-cold")


def _neurons(count: int = 4) -> list[FakeNeuron]:
    out = []
    for uid in range(count):
        out.append(
            FakeNeuron(
                hotkey=ss58(f"//hk{uid}"),
                coldkey=COLD if uid < 2 else OTHER_COLD,
                stake_rao=(uid + 1) * 1_500 * 10**9,
                rank=uid * 1000,
                trust=65535 if uid else 0,
                consensus=32768,
                incentive=uid * 2000,
                dividends=65535 if uid == 0 else 0,
                validator_trust=60000 if uid == 0 else 0,
                pruning_score=(uid + 1) * 100,
                emission_rao=uid * 250_000_000,
                last_update=9_900 - uid,
                registered_at=1_000 + uid * 2_000,
                validator_permit=uid == 0,
                axon={"ip": 3405803781, "port": 8091 + uid, "ip_type": 4, "version": 190, "block": 900},
                prometheus={"block": 950, "version": 190, "ip": 3405803781, "port": 9100, "ip_type": 4}
                if uid == 0
                else None,
            )
        )
    return out


@pytest.fixture(autouse=True)
def _symbols_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("BTCLI_TOKEN_SYMBOLS_CACHE", str(tmp_path / "symbols.json"))  # keep ~ clean


@pytest.fixture
def chain() -> FakeSubstrate:
    fake = FakeSubstrate(block=10_000)
    return fake


def _reader(chain: FakeSubstrate, **kw) -> ChainReader:
    return ChainReader(ChainClient("finney", substrate=chain), NETUID, **kw)


def _scrape(reader: ChainReader) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([ChainCollector(reader)]))
    out = {}
    for family in registry.collect():
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _labels(**labels: str) -> tuple:
    return tuple(sorted(labels.items()))


def _uid(uid: int, hotkey: str) -> tuple:
    return _labels(uid=str(uid), hotkey=hotkey)


def test_every_uid_is_read_through_the_sdk_in_a_fixed_number_of_requests(chain):
    neurons = _neurons(4)
    install_subnet(chain, NETUID, neurons, tempo=360, immunity_period=5000)
    reader = _reader(chain)
    assert reader.refresh()
    m = _scrape(reader)
    hk0, hk3 = neurons[0].hotkey, neurons[3].hotkey
    assert m[("opencompute_chain_block", ())] == 10_000
    assert m[("opencompute_chain_tempo_blocks", ())] == 360
    assert m[("opencompute_chain_immunity_period_blocks", ())] == 5000
    assert m[("opencompute_chain_neurons", ())] == 4
    assert m[("opencompute_chain_neuron_stake_alpha", _uid(3, hk3))] == 6_000.0
    assert m[("opencompute_chain_neuron_epoch_emission_alpha", _uid(3, hk3))] == 0.75
    assert m[("opencompute_chain_neuron_incentive_ratio", _uid(3, hk3))] == pytest.approx(6000 / 65535)
    assert m[("opencompute_chain_neuron_validator_trust_ratio", _uid(0, hk0))] == pytest.approx(60000 / 65535)
    assert m[("opencompute_chain_neuron_dividends_ratio", _uid(0, hk0))] == 1.0
    assert m[("opencompute_chain_neuron_validator_permit", _uid(0, hk0))] == 1.0
    assert m[("opencompute_chain_neuron_validator_permit", _uid(3, hk3))] == 0.0
    assert m[("opencompute_chain_neuron_blocks_since_last_update", _uid(3, hk3))] == 103
    assert m[("opencompute_chain_neuron_registration_block", _uid(3, hk3))] == 7_000
    # 10_000 - 7_000 < 5000: still immune; uid 0 registered at 1_000 is not.
    assert m[("opencompute_chain_neuron_immune", _uid(3, hk3))] == 1.0
    assert m[("opencompute_chain_neuron_immune", _uid(0, hk0))] == 0.0
    assert m[("opencompute_chain_neuron_prometheus_version", _uid(0, hk0))] == 190
    assert m[("opencompute_chain_neuron_prometheus_version", _uid(3, hk3))] == 0
    assert m[("opencompute_chain_neuron_axon_version", _uid(3, hk3))] == 190
    assert (
        m[("opencompute_chain_neuron_axon_info", _labels(uid="3", hotkey=hk3, ip="203.0.113.5", port="8094"))]
        == 1
    )
    info = (
        "opencompute_chain_neuron_info",
        (("coldkey", OTHER_COLD), ("hotkey", hk3), ("registration_block", "7000"), ("uid", "3")),
    )
    assert m[info] == 1.0
    assert m[("opencompute_chain_up", ())] == 1.0
    # Place by incentive among uids without a permit: uid 3 earns most; the validator has none.
    places = {
        uid: m[("opencompute_chain_neuron_miner_position", _uid(uid, neurons[uid].hotkey))]
        for uid in range(4)
    }
    assert places == {0: 0, 1: 3, 2: 2, 3: 1}
    # A later refresh (connected): one block-pinned snapshot with one runtime call, one value and
    # one map read; nothing per uid.
    chain.calls.clear()
    assert reader.refresh()
    reads = [c for c in chain.calls if c in {"runtime_call", "query", "query_map", "query_batch"}]
    assert reads == ["runtime_call", "query", "query_map"]
    assert chain.count("block_number") == 1


def test_the_number_of_requests_does_not_grow_with_the_subnet(chain):
    def calls_of_one_refresh(fake: FakeSubstrate) -> list[str]:
        reader = _reader(fake)
        reader.refresh()  # connects
        fake.calls.clear()
        assert reader.refresh()
        return list(fake.calls)

    install_subnet(chain, NETUID, _neurons(2))
    big = FakeSubstrate(block=10_000)
    install_subnet(big, NETUID, [FakeNeuron(ss58(f"//n{i}"), COLD) for i in range(256)])
    assert calls_of_one_refresh(big) == calls_of_one_refresh(chain)


def test_the_decoding_agrees_with_bittensors_own_metagraph(chain):
    import bittensor as bt

    neurons = _neurons(4)
    install_subnet(chain, NETUID, neurons)
    reader = _reader(chain)
    reader.refresh()
    ours = {n.uid: n for n in reader.view.neurons}
    graph = bt.Subtensor("finney", substrate=chain).subnets.metagraph(NETUID, commitments=False)
    assert graph.block == reader.view.block and graph.tempo == reader.view.tempo
    for theirs in graph.neurons:
        mine = ours[theirs.uid]
        assert (mine.hotkey, mine.coldkey) == (theirs.hotkey, theirs.coldkey)
        assert mine.stake_alpha == pytest.approx(theirs.total_stake.alpha)
        assert mine.emission_alpha == pytest.approx(theirs.emission.alpha)
        for field in ("rank", "trust", "consensus", "incentive", "dividends", "pruning_score"):
            assert getattr(mine, field) == pytest.approx(getattr(theirs, field)), field
        assert (mine.last_update, mine.registered_at) == (theirs.last_update, theirs.block_at_registration)
        assert (mine.active, mine.validator_permit) == (theirs.active, theirs.validator_permit)
        assert f"{mine.axon_ip}:{mine.axon_port}" == theirs.axon


def test_a_neuron_that_does_not_decode_is_counted_and_the_others_are_kept(chain):
    neurons = _neurons(4)
    # Records bittensor's decoder would not produce (so no SCALE round trip): one uid's axon is
    # not a record, another's rank does not fit a u16.
    install_subnet(chain, NETUID, neurons, scale=False)
    neurons[2].axon = "garbage"
    neurons[1].rank = 70_000
    reader = _reader(chain)
    assert reader.refresh()
    m = _scrape(reader)
    assert sorted(n.uid for n in reader.view.neurons) == [0, 3]
    assert m[("opencompute_chain_neuron_decode_errors_total", ())] == 2
    assert m[("opencompute_chain_neurons", ())] == 2


def test_an_unreachable_chain_keeps_serving_the_last_view_with_its_age_and_reason(chain):
    install_subnet(chain, NETUID, _neurons(2))
    clock = [1_000.0]
    reader = _reader(chain, clock=lambda: clock[0])
    assert reader.refresh()
    chain.fail("runtime_call", ConnectionError("socket closed"))
    clock[0] = 1_600.0
    assert not reader.refresh()
    m = _scrape(reader)
    assert m[("opencompute_chain_up", ())] == 0.0
    assert m[("opencompute_chain_last_success_timestamp_seconds", ())] == 1_000.0
    assert m[("opencompute_chain_read_failures_total", (("reason", "unavailable"),))] == 1
    assert m[("opencompute_chain_read_failures_total", (("reason", "timeout"),))] == 0
    assert m[("opencompute_chain_neurons", ())] == 2  # the last view is still served
    assert reader.refresh()  # and the next read reconnects
    assert chain.connects == 2


def test_a_missing_subnet_is_a_bounded_reason_not_an_empty_view(chain):
    install_subnet(chain, 1, _neurons(2))
    reader = _reader(chain)
    assert not reader.refresh()
    assert reader.view is None
    m = _scrape(reader)
    assert m[("opencompute_chain_read_failures_total", (("reason", "no_subnet"),))] == 1
    assert m[("opencompute_chain_last_success_timestamp_seconds", ())] == 0.0
    assert ("opencompute_chain_neurons", ()) not in m


def test_a_chain_that_never_answers_is_cancelled_and_the_next_read_reconnects(chain):
    install_subnet(chain, NETUID, _neurons(2))
    chain.fail("runtime_call", HANG)
    reader = ChainReader(ChainClient("finney", substrate=chain, timeout=0.3), NETUID, timeout=10)
    started = time.monotonic()
    assert not reader.refresh()
    assert time.monotonic() - started < 5
    m = _scrape(reader)
    assert m[("opencompute_chain_read_failures_total", (("reason", "timeout"),))] == 1
    assert reader.refresh()  # the hung read was cancelled, not left holding a thread
    assert chain.closes == 1 and chain.connects == 2


def test_a_client_stuck_past_the_readers_deadline_is_reported_busy_not_stacked():
    import threading

    release = threading.Event()

    class Stuck:
        calls = 0

        def read(self, netuid, coldkeys):
            Stuck.calls += 1
            release.wait(10)
            raise ConnectionError("gave up")

    reader = ChainReader(Stuck(), NETUID, timeout=0.2)
    assert not reader.refresh()
    assert not reader.refresh()
    release.set()
    status = reader.snapshot()[1]
    assert (status.failures["timeout"], status.failures["busy"], Stuck.calls) == (1, 1, 1)


def test_a_new_hotkey_on_an_old_uid_is_a_new_series_never_a_continuation(chain):
    neurons = _neurons(3)
    install_subnet(chain, NETUID, neurons)
    reader = _reader(chain)
    reader.refresh()
    old = neurons[2].hotkey
    neurons[2] = FakeNeuron(ss58("//newcomer"), OTHER_COLD, registered_at=10_050)
    chain.advance(100)
    reader.refresh()
    m = _scrape(reader)
    series = {labels for name, labels in m if name == "opencompute_chain_neuron_stake_alpha"}
    assert _uid(2, ss58("//newcomer")) in series
    assert not any(("hotkey", old) in labels for labels in series)
    info = [dict(labels) for name, labels in m if name == "opencompute_chain_neuron_info"]
    assert {
        "uid": "2",
        "hotkey": ss58("//newcomer"),
        "coldkey": OTHER_COLD,
        "registration_block": "10050",
    } in info


def test_hotkeys_of_our_coldkeys_become_ours_and_survive_a_failed_read(chain):
    neurons = _neurons(4)
    install_subnet(chain, NETUID, neurons)
    ours = OurHotkeys([ss58("//declared")])
    reader = _reader(chain, our_coldkeys=(COLD,), ours=ours)
    assert reader.refresh()
    assert ("query_batch" in chain.calls) and chain.count("query_batch") == 1
    assert sorted(ours.items()) == sorted(
        [(ss58("//declared"), "config"), (neurons[0].hotkey, "coldkey"), (neurons[1].hotkey, "coldkey")]
    )
    chain.fail("block_number", ConnectionError("down"))
    assert not reader.refresh()
    assert {hk for hk, src in ours.items() if src == "coldkey"} == {neurons[0].hotkey, neurons[1].hotkey}


def test_the_exposition_passes_promtool_check_metrics(chain):
    install_subnet(chain, NETUID, _neurons(4))
    reader = _reader(chain)
    reader.refresh()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeCollector([ChainCollector(reader)]))
    proc = check_metrics(generate_latest(registry))
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc


def test_the_network_exporter_wires_the_chain_collector_flags_and_loop(chain, tmp_path):
    from exporters.network.cli import build_exporter
    from exporters.network.simulate import MemoryStateStore

    install_subnet(chain, NETUID, _neurons(2))
    values = _resolve(
        [
            "--network.our-coldkeys",
            COLD,
            "--network.chain-refresh-interval",
            "2m",
            "--network.state-dir",
            str(tmp_path),
        ]
    )
    parts = build_exporter(values, store=MemoryStateStore(), source=None, chain=ChainClient(substrate=chain))
    loop = next(loop for loop in parts.loops if loop.name == "refresh-chain")
    assert loop.interval == 120.0
    loop.func()
    text = generate_latest(parts.exporter.registry).decode()
    assert 'opencompute_scrape_collector_success{collector="chain"} 1.0' in text
    assert (
        f'opencompute_network_our_hotkey_info{{hotkey="{_neurons(2)[0].hotkey}",source="coldkey"}} 1.0'
        in text
    )
    none = build_exporter(values, store=MemoryStateStore(), source=None)
    assert none.chain is None and all(loop.name != "refresh-chain" for loop in none.loops)


def test_a_bad_coldkey_is_a_config_error_naming_the_flag():
    from exporters.core.config import ConfigError

    with pytest.raises(ConfigError) as err:
        _resolve(["--network.our-coldkeys", f"{COLD},nope"])
    assert any("--network.our-coldkeys" in problem for problem in err.value.problems)


def _resolve(argv: list[str]) -> dict:
    import argparse

    from exporters.network.cli import flags

    flagset = flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args(argv), environ={})


def test_an_answer_the_transport_cannot_decode_is_reason_decode(chain):
    install_subnet(chain, NETUID, _neurons(2))
    reader = _reader(chain)
    assert reader.refresh()
    chain.fail("query_map", ValueError("unexpected end of input decoding PrometheusInfo"))
    assert not reader.refresh()
    m = _scrape(reader)
    assert m[("opencompute_chain_read_failures_total", (("reason", "decode"),))] == 1
    assert m[("opencompute_chain_neurons", ())] == 2


def test_the_fake_speaks_scale_as_the_chain_writes_it():
    from fakes.subtensor_scale import SCALE, compact

    record = {"block": 1, "version": 190, "ip": 3405803781, "port": 9100, "ip_type": 4}
    expected = (
        (1).to_bytes(8, "little")
        + (190).to_bytes(4, "little")
        + (3405803781).to_bytes(16, "little")
        + (9100).to_bytes(2, "little")
        + bytes([4])
    )
    assert SCALE.encode(SCALE.prometheus_info, record) == expected
    assert compact(1) == b"\x04" and compact(65535) == b"\xfe\xff\x03\x00"
    assert SCALE.encode(SCALE.u16_vec, [1, 65535]) == b"\x08\x01\x00\xff\xff"
    hotkey = ss58("//hk0")
    assert SCALE.round_trip(SCALE.account_vec, [hotkey]) == [hotkey]  # AccountId32 -> ss58, as decoded
    with pytest.raises(ValueError):
        SCALE.codec.decode(f"scale_info::{SCALE.prometheus_info}", expected[:-3])
