"""Demo children never outlive the demo: groups, grace periods, parent death, readable failures."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from exporters.demo.processes import ChildFailed, Supervisor, wait_until


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie waiting for a reaper)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def test_stopping_kills_the_whole_process_group_including_grandchildren(tmp_path):
    sup = Supervisor(tmp_path)
    child = sup.start("shell", ["sh", "-c", "sleep 60 & echo $!; wait"])
    assert wait_until(lambda: child.log_path.exists() and child.log_path.read_text().strip(), timeout=5)
    grandchild = int(child.log_path.read_text().split()[0])
    sup.stop_all(grace=2.0)
    assert child.proc.returncode is not None
    assert wait_until(lambda: gone(grandchild), timeout=5), "the backgrounded sleep survived"


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    sup = Supervisor(tmp_path)
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = sup.start("stubborn", [sys.executable, "-c", code])
    assert wait_until(lambda: "ready" in child.log_path.read_text() if child.log_path.exists() else False, 5)
    started = time.monotonic()
    sup.stop_all(grace=0.5)
    assert child.proc.returncode == -9
    assert time.monotonic() - started < 3.0


def test_children_die_with_the_process_that_started_them(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from exporters.demo.processes import Supervisor
        child = Supervisor(Path({str(tmp_path)!r})).start("sleeper", ["sleep", "60"])
        print(child.pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        sleeper = int(parent.stdout.readline())
        assert not gone(sleeper)
        parent.kill()  # SIGKILL: no cleanup code runs in the parent
        parent.wait()
        assert wait_until(lambda: gone(sleeper), timeout=5), "orphaned child survived its parent's death"
    finally:
        parent.kill()
        parent.stdout.close()


def test_a_child_that_exits_early_is_reported_with_its_last_log_lines(tmp_path):
    sup = Supervisor(tmp_path)
    child = sup.start("broken", ["sh", "-c", "echo 'cannot listen on 127.0.0.1:9927'; exit 3"])
    with pytest.raises(ChildFailed) as err:
        sup.wait_ready(child, "http://127.0.0.1:9/metrics", timeout=5)
    assert "code 3" in str(err.value) and "cannot listen" in str(err.value)
    assert [c.name for c in sup.exited()] == ["broken"]
    sup.stop_all()


def test_children_output_is_logged_and_optionally_echoed_with_a_prefix(tmp_path):
    import io

    echo = io.StringIO()
    sup = Supervisor(tmp_path, echo=echo)
    child = sup.start("talker", ["sh", "-c", "echo hello"], echo=True)
    child.proc.wait()
    sup.stop_all()
    assert (tmp_path / "talker.log").read_text() == "hello\n"
    assert echo.getvalue() == "[talker] hello\n"
