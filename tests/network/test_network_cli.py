"""``opencompute-exporter network``: flags, defaults, env mirroring, fast --help, a real run."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.exporter_process import running_exporter

from exporters.core.config import ConfigError
from exporters.network import cli

ROOT = Path(__file__).resolve().parents[2]


def resolve(argv: list[str], env: dict[str, str] | None = None) -> dict:
    flagset = cli.flags()
    parser = argparse.ArgumentParser()
    flagset.install(parser)
    return flagset.resolve(parser.parse_args(argv), environ=env or {})


def test_defaults_match_the_documented_cadences_and_thresholds():
    values = resolve([])
    assert values["web_listen_address"] == ("0.0.0.0", 9929)
    assert values["netuid"] == 27
    assert values["subtensor_network"] == "finney"
    assert values["network_validator_refresh_interval"] == 300.0
    assert values["network_miner_refresh_interval"] == 1800.0
    assert values["network_max_run_age"] == 86400.0
    assert values["network_validator_min_stake"] == 1.0e4
    assert values["state_backend"] == "sqlite"
    assert all(values[f"collector_{name}"] for name, _, _ in cli.COLLECTORS)


def test_every_flag_is_mirrored_by_an_environment_variable_and_bad_values_are_reported_together(tmp_path):
    allowlist = tmp_path / "validators.txt"
    allowlist.write_text("")
    env = {
        "OPENCOMPUTE_NETWORK_VALIDATOR_REFRESH_INTERVAL": "90s",
        "OPENCOMPUTE_NETWORK_VALIDATOR_ALLOWLIST": str(allowlist),
    }
    values = resolve(["--network.max-run-age", "2h"], env)
    assert values["network_validator_refresh_interval"] == 90.0
    assert values["network_validator_allowlist"] == str(allowlist)
    assert values["network_max_run_age"] == 7200.0
    with pytest.raises(ConfigError) as err:
        resolve(["--network.refresh-timeout", "0s", "--network.validator-min-stake", "-1", "--netuid", "x"])
    assert len(err.value.problems) == 3


def test_subtensor_network_none_disables_the_chain_source():
    assert cli.chain_source(resolve(["--subtensor.network", "none"])) is None
    source = cli.chain_source(resolve(["--subtensor.chain-endpoint", "ws://127.0.0.1:9944"]))
    assert source is not None and source._target == "ws://127.0.0.1:9944"


def test_help_is_fast_and_imports_neither_wandb_nor_bittensor():
    code = (
        "import sys, time; t = time.perf_counter(); from exporters.cli import main\n"
        "try:\n    main(['network', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'wandb' not in sys.modules and 'bittensor' not in sys.modules, 'heavy import'\n"
        "print(time.perf_counter() - t, file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "--network.validator-refresh-interval" in out.stdout
    assert float(out.stderr.strip().splitlines()[-1]) < 0.3


def test_the_command_serves_metrics_from_a_sqlite_store_without_a_chain(tmp_path):
    """End to end: the real CLI, a SQLite store seeded with signed runs, allowlist trust."""
    from exporters.core.state.sqlite_store import SQLiteStateStore
    from exporters.network.simulate import seed_network

    db = tmp_path / "state.db"
    net = seed_network(SQLiteStateStore(str(db)), validators=3, miners=6, seed=2)
    allow = tmp_path / "validators.txt"
    allow.write_text("\n".join(net.validator_hotkeys) + "\n")
    flags = (
        "--state.backend=sqlite",
        f"--state.sqlite-path={db}",
        "--subtensor.network=none",
        f"--network.validator-allowlist={allow}",
        f"--network.state-dir={tmp_path / 'net'}",
    )
    with running_exporter("network", *flags) as exporter:
        body = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(exporter.url("/metrics"), timeout=2) as resp:
                    body = resp.read().decode()
                if 'opencompute_network_refresh_success{role="miner"} 1.0' in body:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert 'opencompute_network_trust_source_info{source="allowlist"} 1.0' in body, body[-2000:]
        assert 'opencompute_network_runs{role="validator",signature="v2"} 3.0' in body
        assert "opencompute_network_miner_spec_info" in body
        assert exporter.stop() == 0, exporter.log[-2000:]
