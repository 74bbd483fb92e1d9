"""``opencompute-exporter demo`` as a user runs it: a real process, real signals, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.stack import free_ports, require_binaries

pytestmark = pytest.mark.integration

BANNER = "opencompute demo is running"


class Output:
    """Collects a process's merged stdout/stderr in a thread, so the test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)


def processes_mentioning(marker: str) -> list[str]:
    """Live (non-zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in {"Z", "X"}:
            found.append(f"{entry.name}: {cmdline}")
    return found


def demo_command(directory: Path, ports: list[int], *extra: str) -> list[str]:
    names = ("miner", "validator", "network", "prometheus", "alertmanager", "webhook", "registrar")
    addresses = [
        f"--demo.{name}-listen-address=127.0.0.1:{port}" for name, port in zip(names, ports, strict=True)
    ]
    return [sys.executable, "-m", "exporters", "demo", f"--demo.dir={directory}", *addresses, *extra]


def start(argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    )
    return proc, Output(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_the_demo_command_serves_everything_and_stops_every_child_on_sigterm(tmp_path):
    require_binaries()
    ports = free_ports(7)
    proc, out = start(demo_command(tmp_path, ports, "--demo.scrape-interval=1s"))
    try:
        assert out.wait_for(BANNER, timeout=45), out.text()
        for port in ports[:3]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                assert resp.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[3]}/-/ready", timeout=5) as resp:
            assert resp.status == 200
        text = out.text()
        assert f"http://127.0.0.1:{ports[3]}" in text and f"http://127.0.0.1:{ports[2]}/metrics" in text
        assert len(processes_mentioning(str(tmp_path))) >= 5  # 3 exporters, Prometheus, Alertmanager

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, out.text()
    finally:
        stop(proc)
    leftovers = processes_mentioning(str(tmp_path))
    assert leftovers == [], f"processes left behind: {leftovers}"


def test_the_demo_command_runs_the_exporters_and_says_so_when_prometheus_is_not_installed(tmp_path):
    ports = free_ports(7)
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env = {**os.environ, "PATH": str(empty_bin)}
    proc, out = start(demo_command(tmp_path / "demo", ports, "--demo.duration=3s"), env=env)
    try:
        assert proc.wait(timeout=45) == 0, out.text()
    finally:
        stop(proc)
    text = out.text()
    assert "prometheus and prometheus-alertmanager not found: running the exporters only" in text
    assert BANNER in text and f"http://127.0.0.1:{ports[2]}/metrics" in text
    assert processes_mentioning(str(tmp_path)) == []


def test_ctrl_c_while_the_demo_is_starting_stops_what_was_started(tmp_path):
    ports = free_ports(7)
    proc, out = start(demo_command(tmp_path, ports, "--no-demo.prometheus"))
    try:
        assert out.wait_for("seeded", timeout=30), out.text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130, out.text()
    finally:
        stop(proc)
    assert BANNER not in out.text()
    assert processes_mentioning(str(tmp_path)) == []
