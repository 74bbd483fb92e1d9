"""Helpers for the workload tests: a procfs tree from the cgroup fixtures, a short unix-socket dir."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "cgroup_fixtures"
FIXTURE_ID = "5e1f0c2a9b3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789ab"


def container_id(n: int) -> str:
    """A distinct, valid 64-hex container id."""
    return f"{n:04x}" + "c0ffee" * 10


def fixture(name: str, cid: str = FIXTURE_ID) -> str:
    """A cgroup fixture's text, with its container id replaced by ``cid``."""
    return (FIXTURES / f"{name}.txt").read_text().replace(FIXTURE_ID, cid)


def docker_v2(cid: str) -> str:
    return fixture("v2_docker_systemd", cid)


def docker_v1(cid: str) -> str:
    return fixture("v1_docker_cgroupfs", cid)


HOST_V2 = (FIXTURES / "v2_host_service.txt").read_text()


def write_procfs(root: Path, cgroups: Mapping[int, str]) -> Path:
    """``root/<pid>/cgroup`` for each pid: a stand-in for /proc that the exporter reads as files."""
    root.mkdir(parents=True, exist_ok=True)
    for pid, text in cgroups.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "cgroup").write_text(text)
    return root


@contextmanager
def socket_dir() -> Iterator[Path]:
    """A short directory for unix sockets (sun_path is limited to 108 bytes; tmp_path can be longer)."""
    d = Path(tempfile.mkdtemp(prefix="oc-dk-", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
