"""deploy/systemd: units verified by systemd-analyze, hardening scored, env files checked against flags.

PID 1 is not systemd here, but ``systemd-analyze verify`` works offline on unit files; it wants
ExecStart's binary to exist, so the units are verified from a temporary copy whose ExecStart
points at the console script this checkout installed (the same program /usr/local/bin would hold).
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from deploy_tools import find_tool

from exporters.cli import SUBCOMMANDS

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
INSTALLED_EXEC = "/usr/local/bin/opencompute-exporter"

# unit -> (subcommand, env file name)
EXPORTER_UNITS = {
    "opencompute-miner-exporter.service": ("miner", "opencompute-miner"),
    "opencompute-validator-exporter.service": ("validator", "opencompute-validator"),
    "opencompute-network-exporter.service": ("network", "opencompute-network"),
}
REGISTRAR_UNIT = "opencompute-registrar.service"
ALL_SERVICES = {**EXPORTER_UNITS, REGISTRAR_UNIT: ("register-prometheus", "opencompute-registrar")}
ENV_FILES = {env: sub for sub, env in ALL_SERVICES.values()}

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
}


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as {section: [(key, value), ...]}, keeping repeated keys (systemd allows them)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"expected one {key}= in [{section}], found {found}"
    return found[0]


def installed_cli() -> str:
    """The opencompute-exporter console script of this environment (what ExecStart runs)."""
    return find_tool("opencompute-exporter")


def staged_units(tmp_path: Path) -> Path:
    """deploy/systemd's units and timer, copied with ExecStart pointing at the installed CLI."""
    stage = tmp_path / "units"
    stage.mkdir()
    cli = installed_cli()
    for src in sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.timer")):
        (stage / src.name).write_text(src.read_text().replace(INSTALLED_EXEC, cli))
    return stage


def verify(run_tool, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run_tool("systemd-analyze", "verify", "--man=no", *[str(p) for p in paths])


def test_the_deploy_directory_ships_every_unit_the_docs_name():
    names = {p.name for p in SYSTEMD.iterdir() if p.is_file()}
    assert set(ALL_SERVICES) | {"opencompute-registrar.timer"} <= names


def test_every_unit_passes_systemd_analyze_verify_without_a_single_warning(tmp_path, run_tool):
    stage = staged_units(tmp_path)
    units = sorted(stage.iterdir())
    assert len(units) == len(ALL_SERVICES) + 1
    result = verify(run_tool, *units)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", f"systemd-analyze verify complained:\n{result.stderr}"


def test_verify_as_run_here_rejects_a_unit_with_a_typo(tmp_path, run_tool):
    # The check above is only worth something if this harness sees a mistake.
    stage = staged_units(tmp_path)
    unit = stage / "opencompute-network-exporter.service"
    unit.write_text(unit.read_text().replace("PrivateTmp=yes", "PrivateTmp=yes\nProtectHom=yes"))
    result = verify(run_tool, unit)
    assert "Unknown key" in result.stderr and "ProtectHom" in result.stderr


def test_verify_fails_when_exec_start_does_not_exist(tmp_path, run_tool):
    stage = tmp_path / "raw"
    stage.mkdir()
    shutil.copy(SYSTEMD / "opencompute-network-exporter.service", stage)
    result = verify(run_tool, stage / "opencompute-network-exporter.service")
    if Path(INSTALLED_EXEC).exists():  # a machine where the CLI really is installed there
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0 and "opencompute-exporter" in result.stderr


DROP_INS = sorted(p.name for p in (SYSTEMD / "drop-ins").glob("*.conf"))


@pytest.mark.parametrize(
    "drop_in,unit",
    [(d, "opencompute-miner-exporter.service") for d in DROP_INS]
    + [("wallet.conf", "opencompute-validator-exporter.service"), ("wallet.conf", REGISTRAR_UNIT)],
)
def test_documented_drop_ins_verify_when_installed_next_to_their_unit(tmp_path, run_tool, drop_in, unit):
    stage = staged_units(tmp_path)
    d = stage / f"{unit}.d"
    d.mkdir()
    shutil.copy(SYSTEMD / "drop-ins" / drop_in, d / drop_in)
    result = verify(run_tool, stage / unit)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    expected = {"wallet.conf": "BindReadOnlyPaths=", "workload.conf": "ProtectProc=default"}
    assert expected[drop_in] in (SYSTEMD / "drop-ins" / drop_in).read_text()


@pytest.mark.parametrize("unit", sorted(ALL_SERVICES))
def test_each_service_scores_ok_in_systemd_analyze_security(tmp_path, run_tool, unit):
    # --threshold is in tenths: 20 means an overall exposure of at most 2.0 ("OK" starts below 4.0).
    stage = staged_units(tmp_path)
    result = run_tool(
        "systemd-analyze", "security", "--offline=yes", "--threshold=20", "--no-pager", str(stage / unit)
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, f"exposure above 2.0 for {unit}: {summary}"
    assert "Overall exposure level" in summary


@pytest.mark.parametrize("unit", sorted(ALL_SERVICES))
def test_each_service_runs_hardened_as_the_opencompute_user_with_its_env_file(unit):
    sub, env = ALL_SERVICES[unit]
    u = parse_unit(SYSTEMD / unit)
    assert one(u, "Service", "User") == "opencompute"
    assert "DynamicUser" not in dict(u["Service"])
    assert one(u, "Service", "ExecStart") == f"{INSTALLED_EXEC} {sub}"
    assert sub in SUBCOMMANDS
    assert one(u, "Service", "EnvironmentFile") == f"-/etc/default/{env}"
    assert one(u, "Service", "StateDirectory") == "opencompute"
    assert one(u, "Service", "WorkingDirectory") == "/var/lib/opencompute"
    for key, expected in HARDENING.items():
        assert one(u, "Service", key) == expected, key


@pytest.mark.parametrize("unit", sorted(EXPORTER_UNITS))
def test_exporters_restart_on_failure_and_start_at_boot(unit):
    u = parse_unit(SYSTEMD / unit)
    assert one(u, "Service", "Restart") == "on-failure"
    assert one(u, "Install", "WantedBy") == "multi-user.target"


def test_only_the_miner_sees_devices_and_only_nvidia_ones():
    miner = parse_unit(SYSTEMD / "opencompute-miner-exporter.service")
    assert one(miner, "Service", "PrivateDevices") == "no"
    assert one(miner, "Service", "DevicePolicy") == "closed"
    allowed = values(miner, "Service", "DeviceAllow")
    assert "char-nvidia-frontend rw" in allowed
    assert all(a.startswith("char-nvidia") for a in allowed)
    assert "SupplementaryGroups=video" in (SYSTEMD / "opencompute-miner-exporter.service").read_text()
    for unit in sorted(ALL_SERVICES):
        if unit != "opencompute-miner-exporter.service":
            assert one(parse_unit(SYSTEMD / unit), "Service", "PrivateDevices") == "yes", unit


def test_validator_reads_the_computedb_through_a_read_only_bind_mount():
    u = parse_unit(SYSTEMD / "opencompute-validator-exporter.service")
    (bind,) = values(u, "Service", "BindReadOnlyPaths")
    source, _, target = bind.lstrip("-").partition(":")
    assert source == "/etc/opencompute/computedb" and target
    env = dict(v.split("=", 1) for v in values(u, "Service", "Environment"))
    db_path = env["OPENCOMPUTE_VALIDATOR_DB_PATH"]
    assert Path(db_path).parent == Path(target), "the DB path must lie inside the read-only mount"
    assert "BindPaths" not in dict(u["Service"]) and "ReadWritePaths" not in dict(u["Service"])
    assert "OPENCOMPUTE_VALIDATOR_DB_PATH" in flag_envs("validator")


def test_registrar_is_a_oneshot_run_by_an_hourly_timer():
    service = parse_unit(SYSTEMD / REGISTRAR_UNIT)
    timer = parse_unit(SYSTEMD / "opencompute-registrar.timer")
    assert one(service, "Service", "Type") == "oneshot"
    # Inside the serving rate limit (exit 20) the next hourly run serves: not a failed unit.
    from exporters.registrar.record import ExitCode

    assert one(service, "Service", "SuccessExitStatus") == str(int(ExitCode.RATE_LIMITED))
    assert "Install" not in service, "the timer, not the service, is what gets enabled"
    assert one(timer, "Timer", "Unit") == REGISTRAR_UNIT
    assert one(timer, "Timer", "OnUnitActiveSec") == "1h"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    # A one-shot run must not be turned into a loop by the example env file.
    example = (SYSTEMD / "default" / "opencompute-registrar").read_text()
    assert "\nOPENCOMPUTE_REGISTRAR_INTERVAL=" not in example


def test_sysusers_file_creates_the_opencompute_user_with_the_state_directory_as_home(tmp_path, run_tool):
    conf = SYSTEMD / "sysusers.d" / "opencompute.conf"
    (tmp_path / "etc").mkdir()
    result = run_tool("systemd-sysusers", f"--root={tmp_path}", "--dry-run", str(conf))
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert "Creating user 'opencompute'" in out
    assert "warn" not in out.lower() and "unknown" not in out.lower(), out
    line = next(ln for ln in conf.read_text().splitlines() if ln.startswith("u "))
    assert "/var/lib/opencompute" in line and "/usr/sbin/nologin" in line


# --- Example env files -------------------------------------------------------------------------


def flag_envs(subcommand: str) -> set[str]:
    module = importlib.import_module(SUBCOMMANDS[subcommand][0])
    return {f.env for f in module.flags().flags}


def env_entries(path: Path) -> tuple[dict[str, str], set[str]]:
    """(uncommented NAME=value pairs, every OPENCOMPUTE_* name mentioned as an assignment)."""
    active: dict[str, str] = {}
    mentioned: set[str] = set()
    for raw in path.read_text().splitlines():
        line = raw.strip()
        commented = line.startswith("#")
        body = line.lstrip("#").strip()
        name, sep, value = body.partition("=")
        if not sep or not name.replace("_", "").isalnum() or not name.isupper():
            continue
        if name.startswith("OPENCOMPUTE_"):
            mentioned.add(name)
        if not commented:
            active[name] = value
    return active, mentioned


@pytest.mark.parametrize("env_file", sorted(ENV_FILES))
def test_example_env_files_name_only_real_flags_of_their_subcommand(env_file):
    sub = ENV_FILES[env_file]
    _, mentioned = env_entries(SYSTEMD / "default" / env_file)
    assert mentioned, "an example env file should document some settings"
    unknown = mentioned - flag_envs(sub)
    assert not unknown, f"{env_file} mentions variables `{sub}` does not read: {sorted(unknown)}"


@pytest.mark.parametrize("env_file", sorted(ENV_FILES))
def test_every_commented_example_value_is_accepted_by_the_flag_parser(env_file):
    import argparse

    sub = ENV_FILES[env_file]
    module = importlib.import_module(SUBCOMMANDS[sub][0])
    _, mentioned = env_entries(SYSTEMD / "default" / env_file)
    examples = {}
    for raw in (SYSTEMD / "default" / env_file).read_text().splitlines():
        name, sep, value = raw.lstrip("#").strip().partition("=")
        if sep and name in mentioned and value:
            examples[name] = value
    # Files named in examples need not exist here; everything else must parse as written.
    examples.pop("OPENCOMPUTE_WEB_CONFIG_FILE", None)
    for name in [n for n in examples if n.endswith("_VALIDATOR_ALLOWLIST")]:
        examples.pop(name)  # must exist when given (checked at startup)
    module.flags().resolve(argparse.Namespace(), environ=examples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_miner_exec_start_serves_metrics_with_the_example_env_file(tmp_path):
    """What a new operator does first: run ExecStart by hand with the shipped env file, after
    filling in the one value it asks for (the WandB key; WandB itself is out of reach here)."""
    active, _ = env_entries(SYSTEMD / "default" / "opencompute-miner")
    assert active["OPENCOMPUTE_STATE_BACKEND"] == "wandb" and active["WANDB_API_KEY"] == ""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        **active,
        "WANDB_API_KEY": "k" * 40,
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens: reads fail in the background
        "WANDB_DIR": str(tmp_path),
        "OPENCOMPUTE_STATE_SQLITE_PATH": str(tmp_path / "state.db"),
        "OPENCOMPUTE_WEB_LISTEN_ADDRESS": f"127.0.0.1:{port}",
    }
    unit = parse_unit(SYSTEMD / "opencompute-miner-exporter.service")
    argv = one(unit, "Service", "ExecStart").replace(INSTALLED_EXEC, installed_cli()).split()
    proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "opencompute_gpu_nvml_up" not in body:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    body = resp.read().decode()
            except OSError:
                time.sleep(0.1)
        assert "opencompute_gpu_nvml_up" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_the_shipped_env_file_without_the_wandb_key_stops_at_start_with_a_clear_error(tmp_path):
    active, _ = env_entries(SYSTEMD / "default" / "opencompute-miner")
    unit = parse_unit(SYSTEMD / "opencompute-miner-exporter.service")
    argv = one(unit, "Service", "ExecStart").replace(INSTALLED_EXEC, installed_cli()).split()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "NETRC": str(tmp_path / "none"),
        **active,
        "OPENCOMPUTE_HOTKEY_URI": "//Alice",  # a hotkey to publish with (a wallet in production)
        "OPENCOMPUTE_STATE_SQLITE_PATH": str(tmp_path / "state.db"),
        "OPENCOMPUTE_WEB_LISTEN_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    started = time.monotonic()
    result = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and time.monotonic() - started < 20
    assert "WANDB_API_KEY" in result.stdout + result.stderr


@pytest.mark.parametrize("unit", sorted(ALL_SERVICES))
def test_each_exec_start_command_line_is_accepted_by_the_installed_cli(unit):
    argv = one(parse_unit(SYSTEMD / unit), "Service", "ExecStart").replace(INSTALLED_EXEC, installed_cli())
    result = subprocess.run([*argv.split(), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "OPENCOMPUTE_" in result.stdout
