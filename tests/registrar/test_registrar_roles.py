"""Whose record it is: the version is kept from the chain, the port follows the role, miners are refused."""

from __future__ import annotations

import ipaddress

import bittensor as bt
import pytest
from registrar_helpers import NETUID, PUBLIC_IP, desired

import exporters.registrar as registrar_cli
from exporters.cli import main
from exporters.registrar.record import ExitCode, Owner, Role
from exporters.registrar.service import Outcome

KEEP = {"port": None, "version": None}  # the CLI defaults: version from the chain, port by role


def put_record(chain, hotkey, *, version=190, ip=PUBLIC_IP, port=8091, block=9_000):
    chain.set_storage(
        "SubtensorModule",
        "Prometheus",
        [NETUID, hotkey.ss58_address],
        {"block": block, "version": version, "ip": int(ipaddress.ip_address(ip)), "port": port, "ip_type": 4},
    )


def stored(chain, hotkey):
    return chain.get_storage("SubtensorModule", "Prometheus", [NETUID, hotkey.ss58_address])


def test_the_neurons_version_is_kept_and_only_ip_and_port_change(chain, hotkey, make_registrar):
    put_record(chain, hotkey, version=191, ip="198.51.100.1", port=8091)
    registrar = make_registrar(desired(**KEEP))

    result = registrar.run_once()

    assert result.outcome is Outcome.SERVED
    record = stored(chain, hotkey)
    assert (record["version"], record["ip"], record["port"]) == (
        191,
        int(ipaddress.ip_address(PUBLIC_IP)),
        9928,
    )
    snap = registrar.state.snapshot()
    assert snap["serves"]["neuron_reserved"] == 1 and snap["owner"] is Owner.OURS
    assert snap["role"] is Role.VALIDATOR


def test_a_record_that_only_differs_from_ours_in_version_is_left_alone(chain, hotkey, make_registrar):
    put_record(chain, hotkey, version=192, port=9928)

    result = make_registrar(desired(**KEEP)).run_once()

    assert result.outcome is Outcome.SKIPPED_UNCHANGED
    assert chain.submissions == []


def test_without_a_record_the_version_must_be_given(chain, make_registrar):
    registrar = make_registrar(desired(**KEEP))

    result = registrar.run_once()

    assert result.code == ExitCode.NO_VERSION and result.outcome is Outcome.NO_RECORD
    assert "--registrar.version" in result.message and "\n" not in result.message
    assert chain.submissions == []
    assert registrar.state.snapshot()["owner"] is Owner.NONE


def test_without_a_record_an_explicit_version_is_the_first_record(chain, hotkey, make_registrar):
    registrar = make_registrar(desired(port=None, version=190))

    assert registrar.run_once().outcome is Outcome.SERVED
    assert stored(chain, hotkey)["version"] == 190 and stored(chain, hotkey)["port"] == 9928
    assert registrar.state.snapshot()["serves"]["no_record"] == 1


def test_a_hotkey_without_a_validator_permit_is_refused_as_a_miners(chain, hotkey, make_registrar):
    chain.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [True] * 5 + [False])
    put_record(chain, hotkey)

    result = make_registrar(desired(**KEEP)).run_once()

    assert result.code == ExitCode.MINER_HOTKEY == 15
    assert "--registrar.role=miner" in result.message and "validator permit" in result.message
    assert chain.submissions == []


def test_a_subnet_without_permits_on_chain_counts_as_no_permit(chain, hotkey, make_registrar):
    chain.storage.pop(("SubtensorModule", "ValidatorPermit"))

    assert make_registrar(desired(**KEEP)).run_once().code == ExitCode.MINER_HOTKEY


def test_an_explicit_miner_role_publishes_the_miner_exporter_port(chain, hotkey, make_registrar):
    chain.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [False] * 6)
    registrar = make_registrar(desired(port=None, version=190), role=Role.MINER)

    assert registrar.run_once().outcome is Outcome.SERVED
    assert stored(chain, hotkey)["port"] == 9927
    assert registrar.state.snapshot()["role"] is Role.MINER


def test_an_explicit_validator_role_skips_the_permit_check(chain, hotkey, make_registrar):
    chain.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [False] * 6)
    put_record(chain, hotkey)

    assert make_registrar(desired(**KEEP), role=Role.VALIDATOR).run_once().outcome is Outcome.SERVED


def test_loop_mode_waits_out_the_rate_limit_and_then_serves(chain, hotkey, make_registrar):
    put_record(chain, hotkey, version=191, block=chain.block - 20)  # the neuron just served
    registrar = make_registrar(desired(**KEEP), wait_rate_limit=True)

    waiting = registrar.run_once()

    assert waiting.outcome is Outcome.WAITING_RATE_LIMIT and waiting.code == ExitCode.OK
    assert waiting.retry_at_block == chain.block + 30
    assert registrar.next_delay(600.0, waiting) == pytest.approx(31 * 12.0)
    assert chain.submissions == []
    chain.advance(30)
    assert registrar.run_once().outcome is Outcome.SERVED
    assert registrar.next_delay(600.0, None) == 600.0


def test_a_serve_by_the_neuron_is_counted_as_its_change(chain, hotkey, make_registrar):
    registrar = make_registrar(desired(port=None, version=None))
    put_record(chain, hotkey, version=190, port=9928)
    registrar.run_once()
    put_record(chain, hotkey, version=191, port=8091, block=9_500)  # the neuron upgraded
    registrar.run_once()
    put_record(chain, hotkey, version=191, port=7000, block=9_600)  # someone else
    registrar.run_once()

    assert registrar.state.snapshot()["changes"] == {"neuron": 1, "other": 1}


@pytest.fixture
def on_fake_chain(chain, monkeypatch):
    monkeypatch.setattr(registrar_cli, "make_client", lambda target: bt.Client("finney", substrate=chain))


def test_the_cli_refuses_a_miner_hotkey_with_exit_15_and_one_line(chain, on_fake_chain, capsys):
    chain.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [False] * 6)

    code = main(["register-prometheus", "--hotkey.uri", "//Alice", "--registrar.ip", PUBLIC_IP])

    assert code == 15
    [line] = [text for text in capsys.readouterr().err.splitlines() if "level=error" in text]
    assert "no validator permit" in line and "--registrar.role=miner" in line
    assert chain.submissions == []


def test_the_cli_serves_a_miner_hotkey_on_9927_only_when_asked(chain, hotkey, on_fake_chain):
    chain.set_storage("SubtensorModule", "ValidatorPermit", [NETUID], [False] * 6)
    args = ["--hotkey.uri", "//Alice", "--registrar.ip", PUBLIC_IP, "--registrar.version", "190"]

    assert main(["register-prometheus", *args, "--registrar.role", "miner"]) == 0
    assert stored(chain, hotkey)["port"] == 9927


def test_the_cli_without_a_record_or_version_exits_16(chain, on_fake_chain):
    assert main(["register-prometheus", "--hotkey.uri", "//Alice", "--registrar.ip", PUBLIC_IP]) == 16
    assert chain.submissions == []
