"""Child processes that never outlive the demo: own process groups, parent-death signal, logs.

Every child (exporters, Prometheus, Alertmanager) starts in its own session, so a Ctrl-C in the
terminal reaches only the demo, which then stops the children in order: SIGTERM to each
child's process group, a grace period, then SIGKILL. On Linux each child also asks the kernel
for SIGTERM when the demo dies (``PR_SET_PDEATHSIG``), so even ``kill -9`` of the demo leaves
no orphans behind. Output goes to ``<dir>/<name>.log``, and optionally to the terminal with a
``[name]`` prefix.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ChildFailed(RuntimeError):
    """A child exited or did not become ready; the message carries the tail of its log."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when the process that started it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    """One started process: its name, command, log file and the thread copying its output."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes]
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the child's output, for error messages (all of it, once it exited)."""
        if not self.running() and self._pump is not None:
            self._pump.join(timeout=2.0)  # the copy thread may still be writing the last lines
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts children, checks them, and stops all of them (also on errors, via ``with``)."""

    def __init__(self, log_dir: Path, echo: IO[str] | None = None) -> None:
        self.log_dir = log_dir
        self.echo = echo
        self.children: list[Child] = []
        self._echo_lock = threading.Lock()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        echo: bool = False,
    ) -> Child:
        """Start ``argv`` in its own process group; output to ``<log_dir>/<name>.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("PYTHONUNBUFFERED", "1")
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only a prctl call: safe between fork and exec
        )
        child = Child(name=name, argv=list(argv), log_path=log_path, proc=proc)
        child._pump = threading.Thread(
            target=self._copy_output, args=(child, echo and self.echo is not None), daemon=True
        )
        child._pump.start()
        self.children.append(child)
        log.debug("started %s pid=%d: %s", name, proc.pid, " ".join(argv))
        return child

    def _copy_output(self, child: Child, echo: bool) -> None:
        assert child.proc.stdout is not None
        with open(child.log_path, "ab", buffering=0) as out:
            for raw in iter(child.proc.stdout.readline, b""):
                out.write(raw)
                if echo and self.echo is not None:
                    line = raw.decode("utf-8", errors="replace").rstrip("\n")
                    with self._echo_lock:
                        print(f"[{child.name}] {line}", file=self.echo, flush=True)
        child.proc.stdout.close()

    def wait_ready(self, child: Child, url: str, timeout: float = 20.0) -> None:
        """Poll ``url`` until it answers 200; raise ChildFailed if the child dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            if not child.running():
                raise ChildFailed(
                    f"{child.name} exited with code {child.proc.returncode} before it was ready; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )
            if http_ok(url):
                return
            if time.monotonic() > deadline:
                raise ChildFailed(
                    f"{child.name} did not answer {url} within {timeout:.0f}s; "
                    f"last lines of {child.log_path}:\n{child.log_tail()}"
                )
            time.sleep(0.1)

    def exited(self) -> list[Child]:
        """Children that have stopped on their own."""
        return [c for c in self.children if not c.running()]

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every child's process group (newest first), wait ``grace``, then SIGKILL."""
        children = list(reversed(self.children))
        for child in children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", child.name, child.pid, grace)
                _signal_group(child, signal.SIGKILL)
                child.proc.wait()
            # Grandchildren share the group; make sure none linger after the leader exits.
            _signal_group(child, signal.SIGKILL, quiet=True)
            if child._pump is not None:
                child._pump.join(timeout=2.0)
        self.children.clear()


def _signal_group(child: Child, sig: int, quiet: bool = False) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError as exc:  # pragma: no cover - only if the pid was reused
        if not quiet:
            log.warning("cannot signal %s: %s", child.name, exc)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when ``url`` answers HTTP 200 (used for readiness checks)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
