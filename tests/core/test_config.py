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
    assert "--web.listen-address: 'nonsense' is not host:port" in text
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
    assert "--web.listen-address: 'x' is not host:port" in proc.stderr
    assert "OPENCOMPUTE_LOG_LEVEL: 'loud' is not one of debug, info, warning, error" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("nan", "'nan' is not a number; use e.g. 30s, 5m, 1h"),
        ("inf", "'inf' is infinite; use e.g. 30s, 5m, 1h"),
        ("-1s", "'-1s' is negative; use e.g. 30s, 5m, 1h"),
        ("-5", "'-5' is negative; use e.g. 30s, 5m, 1h"),
        ("1e10", "'1e10' is longer than 30 days; use e.g. 30s, 5m, 1h"),
        ("31d", "'31d' is longer than 30 days; use e.g. 30s, 5m, 1h"),
        ("0s", "'0s' is zero; it must be positive; use e.g. 30s, 5m, 1h"),
        ("soon", "'soon' is not a duration; use e.g. 30s, 5m, 1h"),
        ("5 minutes", "'5 minutes' is not a duration; use e.g. 30s, 5m, 1h"),
    ],
)
def test_bad_durations_are_refused_in_words(text, says):
    from exporters.network.cli import flags

    with pytest.raises(ConfigError) as err:
        _resolve(flags(), [f"--network.validator-refresh-interval={text}"])
    assert err.value.problems == [f"--network.validator-refresh-interval: {says}"]


def test_compound_and_day_durations_parse():
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("30d") == 30 * 86400.0
    assert parse_duration("1.5m") == 90.0


def _identity_flags():
    from exporters.core.identity import identity_flags

    return FlagSet(identity_flags("validator"))


def test_unwritable_state_and_outbox_paths_are_refused(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(ConfigError) as err:
        _resolve(
            _identity_flags(),
            [f"--state.sqlite-path={a_file}/sub/state.db", f"--publish.outbox-path={tmp_path}"],
        )
    assert err.value.problems == [
        f"--state.sqlite-path: '{a_file}/sub/state.db' cannot be created: '{a_file}' is not a directory",
        f"--publish.outbox-path: '{tmp_path}' is a directory; give a file path",
    ]


def test_paths_that_can_be_created_are_accepted(tmp_path):
    values = _resolve(_identity_flags(), [f"--state.sqlite-path={tmp_path}/new/dir/state.db"])
    assert values["state_sqlite_path"] == f"{tmp_path}/new/dir/state.db"


def test_a_missing_allowlist_that_was_asked_for_is_an_error(tmp_path):
    from exporters.network.cli import flags

    with pytest.raises(ConfigError) as err:
        _resolve(flags(), [f"--network.validator-allowlist={tmp_path}/nope.txt"])
    assert err.value.problems == [f"--network.validator-allowlist: '{tmp_path}/nope.txt' does not exist"]


def test_a_bad_duration_or_path_exits_2_with_one_line_each(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporters",
            "network",
            "--network.validator-refresh-interval=1e10",
            f"--state.sqlite-path={tmp_path}",
            "--web.max-requests=-1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert sorted(lines[1:]) == [
        "  - --network.validator-refresh-interval: '1e10' is longer than 30 days; use e.g. 30s, 5m, 1h",
        f"  - --state.sqlite-path: '{tmp_path}' is a directory; give a file path",
        "  - --web.max-requests: '-1' is negative; use 0 for no limit",
    ]
