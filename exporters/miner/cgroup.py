"""Which container a process runs in, from ``/proc/<pid>/cgroup`` (cgroup v1 and v2).

The file names the process's cgroup per hierarchy: ``<id>:<controllers>:<path>`` (v1, several
lines) or the single ``0::<path>`` (v2). Container runtimes put each container in a cgroup whose
path ends in the 64-hex container id:

================================ ===================================================================
runtime / cgroup driver          path (examples)
================================ ===================================================================
docker, cgroupfs driver          ``/docker/<id>`` (v1 and v2)
docker, systemd driver           ``/system.slice/docker-<id>.scope``
rootless docker (systemd)        ``/user.slice/user-1000.slice/user@1000.service/.../docker-<id>.scope``
containerd (Kubernetes)          ``/kubepods/burstable/pod<uid>/<id>``, ``...-cri-containerd-<id>.scope``
cri-o                            ``/kubepods.slice/.../crio-<id>.scope``
podman                           ``/machine.slice/libpod-<id>.scope``
================================ ===================================================================

Anything else (``/user.slice/...``, ``/system.slice/sshd.service``, ``/``) is a host process.
Only docker ids can be named through the Docker Engine API; the other runtimes' containers are
containers all the same (``other_container`` for the workload label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_HEX = r"([0-9a-f]{64})"
# (runtime, pattern) in precedence order; the first match on the preferred line wins.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("docker", re.compile(rf"/docker-{_HEX}\.scope(?:/|$)")),
    ("docker", re.compile(rf"/docker/{_HEX}(?:/|$)")),
    ("containerd", re.compile(rf"cri-containerd-{_HEX}\.scope(?:/|$)")),
    ("crio", re.compile(rf"/crio-(?:conmon-)?{_HEX}\.scope(?:/|$)")),
    ("podman", re.compile(rf"/libpod-(?:conmon-)?{_HEX}\.scope(?:/|$)")),
    ("containerd", re.compile(rf"/kubepods[^:]*/{_HEX}(?:/|$)")),
)


@dataclass(frozen=True)
class CgroupOwner:
    """A process's container: ``runtime`` is ``host`` (no container), ``docker``, ``containerd``,
    ``crio`` or ``podman``; ``container_id`` is the full 64-hex id (empty for the host)."""

    runtime: str
    container_id: str = ""


HOST = CgroupOwner("host")


def parse_cgroup(text: str) -> CgroupOwner:
    """The container a ``/proc/<pid>/cgroup`` text points to; :data:`HOST` when none.

    The v2 line (``0::``) is preferred; on a v1-only host every hierarchy's path is tried (they
    agree for container processes; ``name=systemd`` and ``memory`` are always present).
    """
    paths = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if not path:
            continue
        if hierarchy == "0" and controllers == "":
            paths.insert(0, path)
        else:
            paths.append(path)
    for path in paths:
        owner = _match(path)
        if owner is not None:
            return owner
    return HOST


def _match(path: str) -> CgroupOwner | None:
    best: tuple[int, CgroupOwner] | None = None
    for runtime, pattern in _PATTERNS:
        m = pattern.search(path)
        # The outermost container wins (docker-in-docker: the host daemon knows the outer id).
        if m is not None and (best is None or m.start() < best[0]):
            best = (m.start(), CgroupOwner(runtime, m.group(1)))
    return best[1] if best is not None else None


def read_owner(procfs: Path, pid: int) -> CgroupOwner:
    """Read and parse ``<procfs>/<pid>/cgroup``; raises FileNotFoundError / PermissionError."""
    return parse_cgroup((procfs / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace"))
