"""Which workload runs on each GPU: the renter, the SN27 checks, a stranger, or the host.

Per scrape, for every GPU NVML answers for: the compute and graphics process lists (pid, used
GPU memory) and per-process SM utilisation since the previous scrape. Each pid is mapped
pid -> ``/proc/<pid>/cgroup`` -> container id (:mod:`exporters.miner.cgroup`, v1 and v2) ->
container name (Docker Engine API, read-only: :mod:`exporters.miner.docker_api`) -> a bounded
``workload`` label:

* ``rental``: the SN27 miner's renter container (``ssh-container``);
* ``check``: its test and spec-check containers (``ssh-test-container``, ``sn27-check-container``);
* ``other_container``: any other container (docker, containerd, cri-o, podman);
* ``host``: a process in no container;
* ``unknown``: could not be told (no access to ``/proc/<pid>``, Docker unreadable, or a new
  container not looked up yet). Never guessed as ``host`` or ``other_container``, so a broken
  lookup cannot raise a false "stranger on the GPU" alert.

Docker is never asked on a scrape. :meth:`WorkloadResolver.refresh`, run by a background
:class:`~exporters.core.runtime.Loop`, lists the running containers, looks up ids the scrapes
met but the list lacked, and re-reads the cgroups of cached pids (pid reuse, exits). A scrape
does dict lookups, plus one small ``/proc`` read for a pid it has not seen before.

No pid or container-id label is exported: per GPU, ``opencompute_gpu_processes`` has one series
for each of the 5 workloads (0 included, so alerts compare rather than test for absence) and the
memory and utilisation families one per workload with processes (at most 15 series). The caches
are capped (:data:`MAX_PIDS`, :data:`MAX_CONTAINERS`, :data:`MAX_PROCESSES`).
Whatever keeps attribution from working is a ``reason`` of
``opencompute_gpu_process_attribution_problem`` (:data:`PROBLEMS`), never a crash.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.miner.cgroup import CgroupOwner, read_owner
from exporters.miner.docker_api import DockerEngine, DockerError
from exporters.miner.nvml import GpuReader, GpuSample, error_reason

log = logging.getLogger(__name__)

WORKLOADS = ("rental", "check", "other_container", "host", "unknown")
CONTAINER_WORKLOADS = ("rental", "check", "other_container")
DEFAULT_RENTAL_CONTAINERS = ("ssh-container",)
DEFAULT_CHECK_CONTAINERS = ("ssh-test-container", "sn27-check-container")

#: Every value of the ``reason`` label of ``opencompute_gpu_process_attribution_problem``.
PROBLEMS = (
    "nvml_unavailable",  # NVML down: no process lists at all
    "nvml_no_process_support",  # a GPU (or the driver/pynvml) cannot list its processes
    "mig",  # MIG enabled: no per-process utilisation, memory per process may be missing
    "process_limit",  # more than MAX_PROCESSES on a GPU: the rest are not attributed
    "proc_permission_denied",  # /proc/<pid>/cgroup unreadable (hidepid, LSM)
    "proc_pid_not_visible",  # the pid is not in our /proc (another pid namespace: --pid=host)
    "docker_socket_missing",
    "docker_permission_denied",
    "docker_error",  # timeout, refused connection, bad HTTP status or JSON
)

MAX_PIDS = 4096  # cached pid -> cgroup owner entries
MAX_CONTAINERS = 4096  # cached container id -> workload entries (and ids known to be absent)
MAX_PROCESSES = 1024  # processes attributed per GPU per scrape
MAX_LOOKUPS = 64  # single-container lookups per refresh
# Only GPU handles and up/down come from the shared snapshot, so one this old is reused rather
# than re-reading every NVML field (a GPU lost since then just fails its process-list call).
HANDLE_MAX_AGE = 5.0
MIG_RECHECK_SECONDS = 60.0

_NVML_NOT_FOUND = 6  # NVML_ERROR_NOT_FOUND: no utilisation samples since the timestamp
_MIG_ENABLED = 1


@dataclass(frozen=True)
class WorkloadNames:
    """Container names of the SN27 miner's own workloads (configurable: forks rename them)."""

    rental: frozenset[str] = frozenset(DEFAULT_RENTAL_CONTAINERS)
    check: frozenset[str] = frozenset(DEFAULT_CHECK_CONTAINERS)

    def classify(self, name: str) -> str:
        """A docker container name -> ``rental``, ``check`` or ``other_container``."""
        if name in self.rental:
            return "rental"
        if name in self.check:
            return "check"
        return "other_container"


class WorkloadResolver:
    """pid -> workload. Scrapes read caches; :meth:`refresh` (background) talks to Docker."""

    def __init__(
        self,
        engine: DockerEngine,
        *,
        procfs: Path = Path("/proc"),
        names: WorkloadNames | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.procfs = procfs
        self.names = names or WorkloadNames()
        self._clock = clock
        self._lock = threading.Lock()
        self._owners: dict[int, CgroupOwner] = {}
        self._workloads: dict[str, str] = {}  # docker id -> workload (running or looked up)
        self._absent: set[str] = set()  # docker ids the daemon does not know
        self._pending: set[str] = set()  # docker ids scrapes met that the cache lacks
        self._containers: Counter[str] = Counter()
        self._docker_reason: str | None = None
        self._docker_up = False
        self._last_refresh = 0.0

    # -- scrape path: caches only (and a /proc read for a new pid) ---------------------------

    def workload(self, pid: int) -> tuple[str, str | None]:
        """(workload, problem or None) of one GPU process."""
        owner = self._owners.get(pid)
        if owner is None:
            owner, problem = self._read_owner(pid)
            if owner is None:
                return "unknown", problem
        if owner.runtime == "host":
            return "host", None
        if owner.runtime != "docker":
            return "other_container", None
        return self._docker_workload(owner.container_id)

    def _read_owner(self, pid: int) -> tuple[CgroupOwner | None, str | None]:
        try:
            owner = read_owner(self.procfs, pid)
        except PermissionError:
            return None, "proc_permission_denied"
        except OSError:  # FileNotFoundError/ESRCH: not in our pid namespace, or just exited
            return None, "proc_pid_not_visible"
        with self._lock:
            if len(self._owners) >= MAX_PIDS:
                self._owners.clear()
            self._owners[pid] = owner
        return owner, None

    def _docker_workload(self, container_id: str) -> tuple[str, str | None]:
        workload = self._workloads.get(container_id)
        if workload is not None:
            return workload, None
        if container_id in self._absent:  # not a docker container after all (e.g. a stale cgroup)
            return "other_container", None
        with self._lock:
            if len(self._pending) < MAX_CONTAINERS:
                self._pending.add(container_id)
            reason = self._docker_reason
        return "unknown", f"docker_{reason}" if reason is not None else None

    # -- background ---------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Re-read cached pids' cgroups, then list containers and look up pending ids; never raises."""
        self._revalidate_pids()
        with self._lock:
            pending = set(self._pending)
        try:
            running = self.engine.running_containers()
            lookups = sorted(pending - running.keys())[:MAX_LOOKUPS]
            looked_up = {cid: self.engine.container_name(cid) for cid in lookups}
        except DockerError as exc:
            self.engine.api_version = None  # re-negotiate: the daemon may have been upgraded
            self._docker_failed(exc)
            return False
        workloads = {cid: self.names.classify(name) for cid, name in running.items()}
        absent = {cid for cid, name in looked_up.items() if name is None}
        workloads.update({cid: self.names.classify(n) for cid, n in looked_up.items() if n is not None})
        with self._lock:
            if len(self._absent) + len(absent) > MAX_CONTAINERS:
                self._absent.clear()
            self._absent |= absent
            self._workloads = dict(list(workloads.items())[:MAX_CONTAINERS])
            self._pending -= set(lookups) | running.keys()
            self._containers = Counter(workloads[cid] for cid in running)
            if self._docker_reason is not None:
                log.info("Docker Engine API readable again on %s", self.engine.socket_path)
            self._docker_reason, self._docker_up = None, True
            self._last_refresh = self._clock()
        return True

    def _revalidate_pids(self) -> None:
        with self._lock:
            pids = list(self._owners)
        fresh: dict[int, CgroupOwner] = {}
        for pid in pids:
            try:
                fresh[pid] = read_owner(self.procfs, pid)
            except OSError:
                continue  # exited (or no longer visible): read again if NVML lists it
        with self._lock:
            self._owners = fresh

    def _docker_failed(self, exc: DockerError) -> None:
        with self._lock:
            changed = exc.reason != self._docker_reason
            self._docker_reason, self._docker_up = exc.reason, False
        if changed:
            log.warning(
                "cannot read the Docker Engine API (reason=%s): %s; containers are unknown", exc.reason, exc
            )
        else:
            log.debug("Docker Engine API still unreadable: %s", exc)

    def docker_status(self) -> tuple[bool, float, dict[str, int]]:
        """(last refresh succeeded, unix time of the last success or 0, running containers by workload)."""
        with self._lock:
            return self._docker_up, self._last_refresh, dict(self._containers)


@dataclass
class GpuWorkloads:
    """One GPU's processes by workload; ``memory``/``utilization`` None where NVML cannot say."""

    processes: Counter[str] = field(default_factory=Counter)
    memory: dict[str, float] | None = field(default_factory=dict)
    utilization: dict[str, float] | None = None


class WorkloadCollector(SubCollector):
    """GPU processes by workload, and whether attribution works. E.g.::

    opencompute_gpu_processes{gpu="0",uuid="GPU-8a1f...",workload="rental"} 3.0
    opencompute_gpu_process_memory_used_bytes{gpu="0",uuid="GPU-8a1f...",workload="rental"} 6.4e+10
    opencompute_gpu_process_utilization_ratio{gpu="0",uuid="GPU-8a1f...",workload="rental"} 0.93
    opencompute_gpu_process_attribution_complete 1.0
    opencompute_gpu_process_attribution_problem{reason="docker_socket_missing"} 0.0
    opencompute_miner_docker_up 1.0
    opencompute_miner_containers{workload="rental"} 1.0
    """

    name = "workload"

    def __init__(self, reader: GpuReader, resolver: WorkloadResolver) -> None:
        self._reader = reader
        self._resolver = resolver
        self._unsupported: set[tuple[str, str]] = set()  # (uuid, what): not asked again
        self._util_seen: dict[str, int] = {}  # uuid -> newest utilisation sample timestamp (us)
        self._mig: dict[str, tuple[float, bool]] = {}  # uuid -> (checked at, MIG enabled)

    def collect(self) -> Iterator[Metric]:
        snap = self._reader.snapshot(max_age=HANDLE_MAX_AGE)
        problems: set[str] = set() if snap.up else {"nvml_unavailable"}
        per_gpu = [(g, self._gpu(g, problems)) for g in snap.gpus if g.up and g.handle is not None]
        per_gpu = [(g, w) for g, w in per_gpu if w is not None]
        yield from _gpu_families(per_gpu)
        unknown = any(w.processes["unknown"] for _, w in per_gpu)
        yield GaugeMetricFamily(
            "opencompute_gpu_process_attribution_complete",
            "Whether every GPU process of this scrape was attributed to a workload with certainty (1) or "
            "not (0: see opencompute_gpu_process_attribution_problem).",
            value=0.0 if problems or unknown else 1.0,
        )
        problem = GaugeMetricFamily(
            "opencompute_gpu_process_attribution_problem",
            "Whether this reason kept GPU processes from being listed or attributed during this scrape "
            "(1) or not (0).",
            labels=["reason"],
        )
        for reason in PROBLEMS:
            problem.add_metric([reason], 1.0 if reason in problems else 0.0)
        yield problem
        yield from self._docker_families()

    def _gpu(self, gpu: GpuSample, problems: set[str]) -> GpuWorkloads | None:
        in_mig = self._in_mig(gpu)
        if in_mig:
            problems.add("mig")
        procs = self._processes(gpu, problems)
        if procs is None:
            return None
        if len(procs) > MAX_PROCESSES:
            problems.add("process_limit")
            procs = dict(sorted(procs.items())[:MAX_PROCESSES])
        by_pid = self._attribute(procs, problems)
        out = _tally(procs, by_pid)
        if not in_mig:  # NVML has no per-process utilisation in MIG mode
            out.utilization = self._utilization_by_workload(gpu, by_pid)
        return out

    def _in_mig(self, gpu: GpuSample) -> bool:
        """MIG mode, re-read every MIG_RECHECK_SECONDS (switching it needs a GPU reset)."""
        now = time.monotonic()
        cached = self._mig.get(gpu.uuid)
        if cached is not None and now - cached[0] < MIG_RECHECK_SECONDS:
            return cached[1]
        mode = self._reader.call(gpu, "mig_mode", "nvmlDeviceGetMigMode")
        enabled = bool(mode) and int(mode[0]) == _MIG_ENABLED
        self._mig[gpu.uuid] = (now, enabled)
        return enabled

    def _attribute(self, procs: dict[int, float | None], problems: set[str]) -> dict[int, str]:
        workload_of = self._resolver.workload
        by_pid = {}
        for pid in procs:
            workload, why = workload_of(pid)
            if why is not None:
                problems.add(why)
            by_pid[pid] = workload
        return by_pid

    def _utilization_by_workload(self, gpu: GpuSample, by_pid: dict[int, str]) -> dict[str, float] | None:
        util = self._utilization(gpu)
        if util is None:
            return None
        out: dict[str, float] = {}
        for pid, ratio in util.items():
            w = by_pid.get(pid)
            if w is not None:  # a sample of a process that has exited since is dropped
                out[w] = min(1.0, out.get(w, 0.0) + ratio)
        return out

    def _processes(self, gpu: GpuSample, problems: set[str]) -> dict[int, float | None] | None:
        """pid -> used bytes (None = not available) over compute and graphics processes."""
        compute = self._list(gpu, "nvmlDeviceGetComputeRunningProcesses")
        if compute is None:
            problems.add("nvml_no_process_support")
            return None
        graphics = self._list(gpu, "nvmlDeviceGetGraphicsRunningProcesses") or []
        found: dict[int, float | None] = {}
        for proc in (*compute, *graphics):  # a C+G process is listed twice: count it once
            pid, used = proc.pid, proc.usedGpuMemory  # pynvml: None when NVML reports "not available"
            value = None if used is None else float(used)
            found[pid] = value if pid not in found else _max(found[pid], value)
        return found

    def _list(self, gpu: GpuSample, fn_name: str) -> list[Any] | None:
        session = self._reader.session
        fn = getattr(session.module, fn_name, None)
        if fn is None or (gpu.uuid, fn_name) in self._unsupported:
            return None
        try:
            return list(fn(gpu.handle))
        except session.error_class as exc:
            reason = error_reason(exc)
            session.count(reason)
            if reason in ("not_supported", "function_not_found", "no_permission"):
                self._unsupported.add((gpu.uuid, fn_name))
            log.debug("GPU %s: %s failed: %s", gpu.uuid, fn_name, exc)
            return None

    def _utilization(self, gpu: GpuSample) -> dict[int, float] | None:
        """pid -> SM utilisation ratio of its newest sample since the previous scrape."""
        session = self._reader.session
        fn = getattr(session.module, "nvmlDeviceGetProcessUtilization", None)
        if fn is None or (gpu.uuid, "utilization") in self._unsupported:
            return None
        since = self._util_seen.get(gpu.uuid, 0)
        try:
            samples = fn(gpu.handle, since)
        except session.error_class as exc:
            if getattr(exc, "value", None) in (0, _NVML_NOT_FOUND):
                return {}  # no samples since `since` (pynvml raises NVMLError(0) for an empty buffer)
            reason = error_reason(exc)
            session.count(reason)
            if reason in ("not_supported", "function_not_found"):
                self._unsupported.add((gpu.uuid, "utilization"))
            return None
        newest: dict[int, tuple[int, int]] = {}
        for sample in samples:
            ts, pid = sample.timeStamp, sample.pid
            if ts > since and (pid not in newest or ts > newest[pid][0]):
                newest[pid] = (ts, sample.smUtil)
        if newest:
            self._util_seen[gpu.uuid] = max(ts for ts, _ in newest.values())
        return {pid: min(sm, 100) / 100.0 for pid, (_, sm) in newest.items()}

    def _docker_families(self) -> Iterator[Metric]:
        up, last, containers = self._resolver.docker_status()
        yield GaugeMetricFamily(
            "opencompute_miner_docker_up",
            "Whether the latest read of the Docker Engine API (container list, background refresh) "
            "succeeded (1) or not (0).",
            value=1.0 if up else 0.0,
        )
        yield GaugeMetricFamily(
            "opencompute_miner_docker_last_refresh_timestamp_seconds",
            "Unix time of the last successful container list (0 = never).",
            value=last,
        )
        if up:
            fam = GaugeMetricFamily(
                "opencompute_miner_containers",
                "Running docker containers by workload (rental = the renter's ssh-container, check = the "
                "SN27 test/spec-check containers). Cached: as of the last refresh.",
                labels=["workload"],
            )
            for workload in CONTAINER_WORKLOADS:
                fam.add_metric([workload], float(containers.get(workload, 0)))
            yield fam


def _tally(procs: dict[int, float | None], by_pid: dict[int, str]) -> GpuWorkloads:
    counts: Counter[str] = Counter(by_pid.values())
    if any(used is None for used in procs.values()):
        return GpuWorkloads(counts, None)  # partial sums would understate: say nothing instead
    memory: dict[str, float] = {}
    for pid, used in procs.items():
        memory[by_pid[pid]] = memory.get(by_pid[pid], 0.0) + (used or 0.0)
    return GpuWorkloads(counts, memory)


def _gpu_families(per_gpu: Iterable[tuple[GpuSample, GpuWorkloads]]) -> Iterator[Metric]:
    labels = ["gpu", "uuid", "workload"]
    procs = GaugeMetricFamily(
        "opencompute_gpu_processes",
        "Processes on the GPU (NVML compute and graphics lists) by workload.",
        labels=labels,
    )
    memory = GaugeMetricFamily(
        "opencompute_gpu_process_memory_used_bytes",
        "GPU memory used by the GPU's processes, by workload (absent where NVML cannot tell per process, "
        "e.g. MIG without privileges).",
        labels=labels,
    )
    util = GaugeMetricFamily(
        "opencompute_gpu_process_utilization_ratio",
        "Sum of the SM utilisation of the GPU's processes since the previous scrape, by workload (0..1; "
        "absent where NVML has no per-process utilisation, e.g. MIG).",
        labels=labels,
    )
    for gpu, w in per_gpu:
        index = str(gpu.index)
        for workload in WORKLOADS:
            key = [index, gpu.uuid, workload]
            count = w.processes.get(workload, 0)
            procs.add_metric(key, float(count))
            if not count:  # memory and utilisation only where the workload has processes
                continue
            if w.memory is not None:
                memory.add_metric(key, w.memory.get(workload, 0.0))
            if w.utilization is not None:
                util.add_metric(key, w.utilization.get(workload, 0.0))
    yield procs
    yield memory
    yield util


def _max(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(a, b)
