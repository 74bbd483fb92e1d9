"""``opencompute-exporter register-prometheus`` end to end: flags, exit codes, dry run, loop metrics.

The chain boundary (``exporters.registrar.make_client``) returns real bittensor Clients over the
in-memory fake Substrate; nothing here opens a network connection except to loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import bittensor as bt
import pytest
import requests
from bittensor_core import Keypair
from helpers.promtool import assert_promtool_clean
from registrar_helpers import NETUID, PUBLIC_IP

import exporters.registrar as registrar_cli
from exporters import __version__
from exporters.cli import main
from exporters.registrar.record import ExitCode, encode_version

ALICE = ["--hotkey.uri", "//Alice"]


@pytest.fixture
def on_fake_chain(chain, monkeypatch):
    """Route the CLI's chain connections to the fake chain; count how many clients it builds."""
    built = []

    def make_client(target):
        built.append(target)
        return bt.Client("finney", substrate=chain)

    monkeypatch.setattr(registrar_cli, "make_client", make_client)
    return built


@pytest.fixture
def no_chain(monkeypatch):
    def refuse(target):
        raise AssertionError("this path must not touch the chain")

    monkeypatch.setattr(registrar_cli, "make_client", refuse)


def register(*args):
    return main(["register-prometheus", *args])


def test_dry_run_prints_the_exact_call_and_touches_no_chain(no_chain, capsys):
    code = register(*ALICE, "--registrar.ip", "198.51.100.4", "--dry-run")

    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["call"] == {
        "module": "SubtensorModule",
        "function": "serve_prometheus",
        "params": {
            "netuid": 27,
            "version": "kept from the on-chain record",  # never this suite's own version
            "ip": 3325256708,
            "port": 9928,
            "ip_type": 4,
        },
    }
    assert str(encode_version(__version__)) not in json.dumps(document["version"])
    assert document["signer"] == Keypair.create_from_uri("//Alice").ss58_address
    assert document["signer_role"] == "hotkey"


def test_dry_run_as_a_miner_shows_the_miner_exporter_port(no_chain, capsys):
    code = register(*ALICE, "--registrar.ip", "198.51.100.4", "--registrar.role", "miner", "--dry-run")

    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["call"]["params"]["port"] == 9927
    assert document["role"] == "miner"


def test_dry_run_with_ipv6_and_an_explicit_version(no_chain, capsys):
    code = register(*ALICE, "--registrar.ip", "2606:4700::1111", "--registrar.version", "1.9.0", "--dry-run")

    assert code == 0
    params = json.loads(capsys.readouterr().out)["call"]["params"]
    assert params["ip_type"] == 6 and params["ip"] == 0x26064700000000000000000000001111
    assert params["version"] == 190


def test_a_run_serves_once_then_skips_the_unchanged_record(chain, on_fake_chain, hotkey):
    args = [*ALICE, "--registrar.ip", PUBLIC_IP, "--registrar.version", "1.9.0"]

    assert register(*args) == 0
    assert register(*args) == 0

    assert len(chain.submissions) == 1
    stored = chain.get_storage("SubtensorModule", "Prometheus", [NETUID, hotkey.ss58_address])
    assert stored["version"] == 190 and stored["port"] == 9928
    assert on_fake_chain == ["finney", "finney"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--registrar.ip", "127.0.0.1"], ExitCode.INVALID_IP),
        (["--registrar.ip", "0.0.0.0"], ExitCode.INVALID_IP),
        (["--registrar.ip", "::1"], ExitCode.INVALID_IP),
        (["--registrar.ip", "255.255.255.255"], ExitCode.IP_OUT_OF_RANGE),
        (["--registrar.ip", PUBLIC_IP, "--registrar.port", "0"], ExitCode.INVALID_PORT),
        (["--registrar.ip", PUBLIC_IP, "--registrar.port", "65536"], ExitCode.INVALID_PORT),
    ],
)
def test_local_validation_errors_exit_with_their_codes(chain, on_fake_chain, args, code, caplog):
    assert register(*ALICE, *args) == code
    assert chain.submissions == []


def test_an_unregistered_hotkey_exits_14(chain, on_fake_chain):
    assert register("--hotkey.uri", "//Bob", "--registrar.ip", PUBLIC_IP) == ExitCode.NOT_REGISTERED
    assert chain.submissions == []


def test_a_chain_rate_limit_exits_20_after_a_single_submission(chain, on_fake_chain):
    chain.reject_next_submit("ServingRateLimitExceeded")

    code = register(*ALICE, "--registrar.ip", PUBLIC_IP, "--registrar.version", "190")

    assert code == ExitCode.RATE_LIMITED
    assert len(chain.submissions) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--registrar.port", "http"],
        ["--registrar.ip", "example.org"],
        ["--registrar.version", "1.10.0"],
        ["--subtensor.chain-endpoint", "https://node:9944"],
        ["--registrar.max-attempts", "0"],
        ["--subtensor.network", "mainnet"],
    ],
)
def test_bad_flags_exit_2(no_chain, args, capsys):
    assert register(*ALICE, *args) == ExitCode.CONFIG
    assert "invalid configuration" in capsys.readouterr().err


def test_a_missing_wallet_exits_3_with_the_path(no_chain, tmp_path, capsys):
    code = register("--wallet.name", "nope", "--wallet.path", str(tmp_path), "--dry-run")

    assert code == ExitCode.KEY
    assert str(tmp_path) in capsys.readouterr().err


def test_a_wallet_hotkey_on_disk_signs(no_chain, tmp_path, capsys):
    wallet = bt.Wallet(name="cold", hotkey="hot", path=str(tmp_path))
    wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)

    code = register(
        "--wallet.name", "cold", "--wallet.hotkey", "hot", "--wallet.path", str(tmp_path),
        "--registrar.ip", PUBLIC_IP, "--dry-run",
    )  # fmt: skip

    assert code == 0
    assert json.loads(capsys.readouterr().out)["signer"] == wallet.hotkey.ss58_address


def test_an_undiscoverable_address_exits_4(no_chain, monkeypatch, capsys):
    from exporters.registrar.record import DiscoveryError

    def fail():
        raise DiscoveryError("the discovered address 10.0.0.5 is private; pass --registrar.ip")

    monkeypatch.setattr(registrar_cli, "discover_ip", fail)

    assert register(*ALICE, "--dry-run") == ExitCode.IP_DISCOVERY
    assert "--registrar.ip" in capsys.readouterr().err


def test_an_unreachable_real_endpoint_exits_22_within_the_time_budget(capsys):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()

    code = register(
        *ALICE, "--registrar.ip", PUBLIC_IP, "--subtensor.chain-endpoint", f"ws://127.0.0.1:{port}",
        "--registrar.max-attempts", "2", "--registrar.max-retry-time", "3s",
    )  # fmt: skip

    assert code == ExitCode.UNREACHABLE
    assert time.monotonic() - started < 6.0
    assert "chain unreachable" in capsys.readouterr().err


def test_help_lists_the_exit_codes_and_does_not_import_bittensor():
    script = (
        "import sys, contextlib, io\n"
        "from exporters.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    try:\n"
        "        main(['register-prometheus', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'bittensor' not in sys.modules, 'bittensor imported by --help'\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "print(buf.getvalue())\n"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    elapsed = time.monotonic() - started

    assert "exit codes:" in out and "14  hotkey not registered on the subnet" in out
    assert "--registrar.max-retry-time" in out and "--wait-for-finalization" in out
    assert elapsed < 2.0  # generous for a loaded CI box; typically about 0.1 s


def test_loop_mode_serves_the_registrar_metrics(chain, on_fake_chain, monkeypatch):
    from exporters.core import runtime

    scraped = {}

    def serve_once(self, values, web_config):
        server = self.server("127.0.0.1", 0, values["web_telemetry_path"], web_config)
        server.start()
        try:
            for loop in self.loops:
                loop.func()
            scraped["body"] = requests.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        finally:
            server.shutdown()
        return 0

    monkeypatch.setattr(runtime.Exporter, "serve", serve_once)

    code = register(
        *ALICE, "--registrar.ip", PUBLIC_IP, "--registrar.interval", "5m", "--registrar.version", "190"
    )

    assert code == 0
    body = scraped["body"]
    assert 'opencompute_registrar_attempts_total{outcome="served"} 1.0' in body
    assert 'opencompute_registrar_attempts_total{outcome="transport_error"} 0.0' in body
    assert "opencompute_registrar_onchain_version 190.0" in body
    assert "opencompute_registrar_onchain_port 9928.0" in body
    assert f"opencompute_registrar_onchain_block {float(chain.block)}" in body
    assert "opencompute_registrar_up_to_date 1.0" in body
    assert "opencompute_registrar_last_success_timestamp_seconds" in body
    assert 'opencompute_scrape_collector_success{collector="registrar"} 1.0' in body
    assert 'opencompute_registrar_serves_total{cause="no_record"} 1.0' in body
    assert 'opencompute_registrar_record_owner{owner="ours"} 1.0' in body
    assert 'opencompute_registrar_role_info{role="validator"} 1.0' in body
    assert f'opencompute_registrar_onchain_address_info{{ip="{PUBLIC_IP}",ip_type="4"}} 1.0' in body

    assert_promtool_clean(body)
