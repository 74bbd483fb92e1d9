"""Flags, environment mirroring, and bad configuration reported all at once without a traceback."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from exporters.core.config import (
    ConfigError,
    Flag,
    FlagSet,
    collector_flags,
    parse_duration,
    parse_listen_address,
    web_flags,
)
from exporters.core.webconfig import load_web_config


def _resolve(flags: FlagSet, argv: list[str], env: dict[str, str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    flags.install(parser)
    return flags.resolve(parser.parse_args(argv), environ=env or {})


def test_command_line_beats_environment_beats_default():
    fs = FlagSet(web_flags(9927))
    assert _resolve(fs, [])["web_listen_address"] == ("0.0.0.0", 9927)
    env = {"OPENCOMPUTE_WEB_LISTEN_ADDRESS": "127.0.0.1:1111"}
    assert _resolve(fs, [], env)["web_listen_address"] == ("127.0.0.1", 1111)
    got = _resolve(fs, ["--web.listen-address", "[::1]:2222"], env)["web_listen_address"]
    assert got == ("::1", 2222)


def test_collector_toggles_work_from_flags_and_environment():
    fs = FlagSet(collector_flags([("gpu", True, "GPUs"), ("pcie", False, "PCIe")]))
    assert _resolve(fs, []) == {"collector_gpu": True, "collector_pcie": False}
    assert _resolve(fs, ["--no-collector.gpu", "--collector.pcie"]) == {
        "collector_gpu": False,
        "collector_pcie": True,
    }
    assert _resolve(fs, [], {"OPENCOMPUTE_COLLECTOR_PCIE": "yes"})["collector_pcie"] is True


def test_every_problem_is_reported_at_once():
    fs = FlagSet(web_flags(9927))
    fs.add(Flag("refresh", "x", default=1.0, convert=parse_duration), Flag("wallet.name", "x", required=True))
    env = {"OPENCOMPUTE_REFRESH": "soon"}
    with pytest.raises(ConfigError) as err:
        _resolve(fs, ["--web.listen-address", "nonsense", "--web.telemetry-path", "metrics"], env)
    text = "\n".join(err.value.problems)
    assert len(err.value.problems) == 4
    assert "--web.listen-address='nonsense'" in text
    assert "--web.telemetry-path" in text
    assert "OPENCOMPUTE_REFRESH: 'soon' is not a duration; use e.g. 30s, 5m, 1h" in text
    assert "--wallet.name (or OPENCOMPUTE_WALLET_NAME) is required" in text


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("12", 12.0)]
)
def test_durations_parse_in_prometheus_style(text, seconds):
    assert parse_duration(text) == seconds


def test_listen_address_rejects_out_of_range_ports():
    with pytest.raises(ValueError):
        parse_listen_address(":70000")


def test_web_config_rejects_plaintext_passwords_and_missing_files_together(tmp_path):
    p = tmp_path / "web.yml"
    p.write_text(
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n"
        "basic_auth_users:\n  alice: hunter2\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as err:
        load_web_config(p)
    text = "\n".join(err.value.problems)
    assert "alice is not a bcrypt hash" in text
    assert "cert_file: no such file" in text
    assert "unknown key 'bogus'" in text
    assert "hunter2" not in text  # never echo a secret back


def test_invalid_configuration_exits_2_with_all_problems_and_no_traceback(tmp_path):
    bad = tmp_path / "web.yml"
    bad.write_text("basic_auth_users:\n  bob: plaintext\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporters",
            "miner",
            "--web.listen-address",
            "x",
            "--web.config.file",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"OPENCOMPUTE_LOG_LEVEL": "loud", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "invalid configuration" in proc.stderr
    assert "--web.listen-address='x'" in proc.stderr
    assert "OPENCOMPUTE_LOG_LEVEL='loud'" in proc.stderr
    assert "Traceback" not in proc.stderr
