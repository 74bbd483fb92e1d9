"""A real ``opencompute-exporter <subcommand>`` as a process: started, found serving, stopped.

The CLI tests of every exporter prove the same three things about the installed command: it
starts from its flags alone, it serves /metrics on the port it logs, and SIGTERM stops it with
exit status 0. This is that scaffolding once. The process listens on ``127.0.0.1:0`` (the port
comes from its own "listening on" log line, so parallel runs never collide), inherits no
``OPENCOMPUTE_*`` variable from the developer's shell, and is killed if a test fails before
stopping it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"listening on https?://127\.0\.0\.1:(\d+)/")
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class ExporterProcess:
    """One running exporter process; its output (stdout and stderr) is read as it comes."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.port = 0
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="exporter-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # Draining the pipe keeps a chatty exporter from blocking on a full pipe buffer.
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.append(line)

    @property
    def log(self) -> str:
        """Everything the process has written so far (all of it once :meth:`stop` returned)."""
        return "".join(list(self._lines))

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_until_serving(self, timeout: float = STARTUP_TIMEOUT) -> int:
        """The port from the "listening on" log line; AssertionError (with the log) if none comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self._lines):
                match = LISTENING.search(line)
                if match:
                    self.port = int(match.group(1))
                    return self.port
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"the exporter did not start serving (exit {self.proc.poll()}):\n{self.log}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, as systemd and Kubernetes stop it; the exit status once it has exited."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        """SIGKILL if still running (a test failed before :meth:`stop`), and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(STOP_TIMEOUT)


@contextmanager
def running_exporter(
    subcommand: str, *flags: str, startup_timeout: float = STARTUP_TIMEOUT
) -> Iterator[ExporterProcess]:
    """``python -m exporters <subcommand> --web.listen-address=127.0.0.1:0 <flags>``, serving."""
    argv = [sys.executable, "-m", "exporters", subcommand, "--web.listen-address=127.0.0.1:0", *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCOMPUTE_")}
    process = ExporterProcess(argv, env)
    try:
        process.wait_until_serving(startup_timeout)
        yield process
    finally:
        process.kill()
