"""``opencompute-exporter miner``: GPU (NVML), host specs and miner state on port 9927.

pynvml and psutil are imported inside :func:`run`, never at module top, so ``--help`` stays fast,
and :func:`build_exporter` takes both modules as arguments so tests and benchmarks inject fakes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from exporters.core.collector import SubCollector
from exporters.core.config import (
    ConfigError,
    Flag,
    FlagSet,
    collector_flags,
    enabled_collectors,
    positive_duration,
    web_flags,
)
from exporters.core.runtime import Exporter, Loop

log = logging.getLogger(__name__)

DEFAULT_PORT = 9927
DEFAULT_PUBLISH_INTERVAL = 1800.0  # the original re-published specs every 150 blocks (~30 min)
DEFAULT_ALLOCATION_REFRESH_INTERVAL = 900.0  # the original checked allocation every 75 blocks (~15 min)
DEFAULT_STATE_DIR = "~/.opencompute/miner"  # the last good metagraph (validator trust)
DEFAULT_WORKLOAD_REFRESH_INTERVAL = 15.0

COLLECTORS: tuple[tuple[str, bool, str], ...] = (
    ("nvml", True, "GPU health and utilisation from NVML."),
    ("xid", True, "XID errors from NVML events, gathered in a background thread."),
    ("pcie", False, "PCIe throughput from NVML (costs ~20 ms per GPU per scrape)."),
    ("host", True, "Host specs the miner advertises (psutil; no speed tests)."),
    (
        "workload",
        True,
        "GPU processes by workload (rental, check, other_container, host) from NVML, /proc and the "
        "Docker Engine API (read-only).",
    ),
    ("miner", True, "Allocation (from trusted validators' runs), the external port check, publish health."),
)


def _ip(text: str) -> str:
    return str(ipaddress.ip_address(text.strip()))


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {text!r}")
    return port


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise ValueError("expected a comma-separated list of container names")
    return names


def _workload_flags() -> list[Flag]:
    from exporters.miner.docker_api import DEFAULT_SOCKET
    from exporters.miner.workload import DEFAULT_CHECK_CONTAINERS, DEFAULT_RENTAL_CONTAINERS

    return [
        Flag("workload.docker-socket", "Docker Engine API socket (only GET requests are sent).",
             default=DEFAULT_SOCKET, metavar="PATH"),
        Flag("workload.procfs", "procfs mount point to read /proc/<pid>/cgroup from (the host's /proc, "
             "e.g. /host/proc in a container; the pids must be the host's: run with --pid=host).",
             default="/proc", metavar="PATH"),
        Flag("workload.refresh-interval", "How often container names are read from Docker and cached pids "
             "re-checked (background, never on a scrape).", default=DEFAULT_WORKLOAD_REFRESH_INTERVAL,
             convert=positive_duration, metavar="DURATION"),
        Flag("workload.docker-timeout", "Connect and read timeout of each Docker API request.",
             default=2.0, convert=positive_duration, metavar="DURATION"),
        Flag("workload.rental-containers", "Container names classified as workload=rental.",
             default=DEFAULT_RENTAL_CONTAINERS, convert=_names, metavar="NAMES"),
        Flag("workload.check-containers", "Container names classified as workload=check.",
             default=DEFAULT_CHECK_CONTAINERS, convert=_names, metavar="NAMES"),
    ]  # fmt: skip


def flags() -> FlagSet:
    """Every flag of the miner exporter (each mirrored by an OPENCOMPUTE_* env var)."""
    fs = FlagSet()
    fs.add(*web_flags(DEFAULT_PORT))
    fs.add(*collector_flags(COLLECTORS))
    fs.add(
        Flag("host.disk-path", "Filesystem whose size and free space the miner advertises.", default="/"),
        Flag(
            "miner.external-ip",
            "External IP validators connect to; enables the port check (with --miner.port).",
            convert=_ip,
            metavar="IP",
        ),
        Flag("miner.port", "External axon port to check for reachability.", convert=_port, metavar="PORT"),
        Flag(
            "miner.port-check-interval",
            "How often to check the external port (background, never on a scrape).",
            default=60.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "miner.port-check-timeout",
            "TCP connect timeout of the port check.",
            default=3.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "miner.allocation-refresh-interval",
            "How often to check whether a trusted validator's verified run lists this miner's hotkey "
            "as allocated (background, never on a scrape; the original miner checks every 75 blocks). "
            "Needs --wallet.name or --hotkey.uri.",
            default=DEFAULT_ALLOCATION_REFRESH_INTERVAL,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "miner.publish-interval",
            "How often specs/allocation/port state are re-published (also at once when allocation or "
            "port state changes); publishing needs --wallet.name or --hotkey.uri.",
            default=DEFAULT_PUBLISH_INTERVAL,
            convert=positive_duration,
            metavar="DURATION",
        ),
    )
    from exporters.core.identity import identity_flags
    from exporters.subnet.trust import trust_flags

    fs.add(*_workload_flags())
    fs.add(*identity_flags("miner"))
    fs.add(*trust_flags("miner", DEFAULT_STATE_DIR))
    return fs


def check(values: dict[str, Any]) -> None:
    """Cross-flag checks argparse cannot do; raises ConfigError listing every problem."""
    problems = []
    ip, port = values.get("miner_external_ip"), values.get("miner_port")
    if (ip is None) != (port is None):
        problems.append("--miner.external-ip and --miner.port must be set together (or neither)")
    if problems:
        raise ConfigError(problems)


@dataclass
class MinerParts:
    """What :func:`build_exporter` assembled, so callers (tests, benchmarks) can reach the pieces."""

    exporter: Exporter
    session: Any = None
    reader: Any = None
    watcher: Any = None
    port_checker: Any = None
    loops: list[Loop] = field(default_factory=list)
    publisher: Any = None
    publish_job: Any = None
    allocation: Any = None
    workload: Any = None


def build_exporter(
    values: dict[str, Any],
    *,
    nvml: Any | None,
    psutil: Any,
    host_reader: Any | None = None,
    extra: tuple[Any, ...] = (),
    extra_loops: tuple[Loop, ...] = (),
    clock: Callable[[], float] = time.time,
    snapshot_max_age: float = 1.0,
    identity: Any = None,
    store: Any = None,
    validator_source: Any = None,
    workload_resolver: Any = None,
) -> MinerParts:
    """Assemble collectors and loops from resolved flag values and the injected upstream modules.

    ``host_reader`` (a zero-argument callable returning HostSpecs) replaces the psutil read, and
    ``clock`` (wall time for XID and port-check timestamps) can be pinned, e.g. for a golden file.
    ``snapshot_max_age`` is how long collectors of one scrape share an NVML read (0 = every call).
    ``identity``/``store`` override what the ``--wallet``/``--hotkey.uri``/``--state`` flags build,
    ``validator_source`` the chain source of ``--subtensor.*`` (validator trust for the allocation),
    ``workload_resolver`` the pid -> workload lookup of ``--workload.*`` (the demo's simulated one).
    """
    from exporters.miner.gpu import NvmlCollector, PcieCollector
    from exporters.miner.host import HostCollector, read_host
    from exporters.miner.nvml import GpuReader, NvmlSession
    from exporters.miner.portcheck import PortChecker
    from exporters.miner.status import MinerStatusCollector
    from exporters.miner.workload import WorkloadCollector
    from exporters.miner.xid import XidCollector, XidWatcher

    on = enabled_collectors(values, COLLECTORS)
    wants_nvml = on["nvml"] or on["xid"] or on["pcie"] or on["workload"]
    session = NvmlSession(nvml) if wants_nvml else None
    reader = GpuReader(session, max_age=snapshot_max_age) if session is not None else None
    collectors: list[SubCollector] = []
    loops: list[Loop] = []
    watcher = checker = None
    if on["nvml"] and reader is not None:
        collectors.append(NvmlCollector(reader))
    if on["xid"] and session is not None:
        watcher = XidWatcher(session, clock=clock)
        collectors.append(XidCollector(watcher))
        loops.append(watcher.loop())
    if on["pcie"] and reader is not None:
        collectors.append(PcieCollector(reader))
    resolver = None
    if on["workload"] and reader is not None:
        resolver, refresh = _workload(values, workload_resolver, clock)
        collectors.append(WorkloadCollector(reader, resolver))
        loops.append(refresh)
    disk = values.get("host_disk_path") or "/"
    read = host_reader if host_reader is not None else (lambda: read_host(psutil, disk))
    if on["host"]:
        collectors.append(HostCollector(read, reader if on["nvml"] else None))
    publisher = job = allocation = None
    if on["miner"]:
        if values.get("miner_external_ip") and values.get("miner_port"):
            checker = PortChecker(
                values["miner_external_ip"],
                int(values["miner_port"]),
                timeout=float(values.get("miner_port_check_timeout") or 3.0),
                clock=clock,
            )
            interval = float(values.get("miner_port_check_interval") or 60.0)
            loops.append(Loop("port-check", interval, checker.check))
        publish_parts, publisher, allocation = _publishing(values, identity, store, validator_source, clock)
        if allocation is not None:
            publish_parts.append(allocation.collector())
            every = values.get("miner_allocation_refresh_interval") or DEFAULT_ALLOCATION_REFRESH_INTERVAL
            loops.append(Loop("allocation-refresh", float(every), allocation.refresh))
        collectors.append(MinerStatusCollector(checker, publish_parts))
        if publisher is not None:
            job = _publish_job(values, publisher, read, reader if on["nvml"] else None, allocation, checker)
            loops.append(Loop("miner-payload", 60.0, job.tick))
            loops.append(
                Loop("publish-flush", float(values.get("publish_interval") or 60.0), publisher.flush)
            )
    loops.extend(extra_loops)
    exporter = Exporter("miner", collectors, extra=extra, loops=loops)
    return MinerParts(
        exporter, session, reader, watcher, checker, loops, publisher, job, allocation, resolver
    )


def _workload(values: dict[str, Any], resolver: Any, clock: Callable[[], float]) -> tuple[Any, Loop]:
    """The pid -> workload resolver of the ``--workload.*`` flags and its background refresh."""
    from pathlib import Path

    from exporters.miner.docker_api import DEFAULT_SOCKET, DockerEngine
    from exporters.miner.workload import (
        DEFAULT_CHECK_CONTAINERS,
        DEFAULT_RENTAL_CONTAINERS,
        WorkloadNames,
        WorkloadResolver,
    )

    if resolver is None:
        engine = DockerEngine(
            values.get("workload_docker_socket") or DEFAULT_SOCKET,
            timeout=float(values.get("workload_docker_timeout") or 2.0),
        )
        names = WorkloadNames(
            rental=frozenset(values.get("workload_rental_containers") or DEFAULT_RENTAL_CONTAINERS),
            check=frozenset(values.get("workload_check_containers") or DEFAULT_CHECK_CONTAINERS),
        )
        procfs = Path(values.get("workload_procfs") or "/proc")
        resolver = WorkloadResolver(engine, procfs=procfs, names=names, clock=clock)
    every = float(values.get("workload_refresh_interval") or DEFAULT_WORKLOAD_REFRESH_INTERVAL)
    return resolver, Loop("workload-refresh", every, resolver.refresh)


def _publishing(
    values: dict[str, Any], identity: Any, store: Any, validator_source: Any, clock: Callable[[], float]
) -> tuple[list[SubCollector], Any, Any]:
    """Identity/store info and, with a wallet or key URI, the core publisher and the allocation
    source (else None for both: without our hotkey there is nothing to look up)."""
    from exporters.core.identity import IdentityCollector, build_identity, build_publisher, build_store

    if identity is None:
        identity = build_identity(values, "miner")
    if identity is not None and store is None:
        store = build_store(values)
    parts: list[SubCollector] = [IdentityCollector(identity, store, "miner")]
    publisher = build_publisher(values, identity, store, "miner") if identity is not None else None
    if publisher is not None:
        parts.append(publisher.collector())
    if identity is None or store is None:
        log.info(
            "allocation not reported: no --wallet.name or --hotkey.uri, so this miner's hotkey is unknown "
            "(it is looked up in trusted validators' allocated_hotkeys)"
        )
        return parts, publisher, None
    return parts, publisher, _allocation_source(values, identity, store, validator_source, clock)


def _allocation_source(
    values: dict[str, Any], identity: Any, store: Any, validator_source: Any, clock: Callable[[], float]
) -> Any:
    from exporters.miner.allocation import AllocationSource
    from exporters.subnet.trust import DEFAULT_MAX_RUN_AGE, build_resolver, chain_source

    source = validator_source if validator_source is not None else chain_source(values)
    return AllocationSource(
        store,
        build_resolver(values, "miner", source),
        identity.hotkey,
        netuid=identity.netuid,
        max_run_age=float(values.get("miner_max_run_age") or DEFAULT_MAX_RUN_AGE),
        clock=clock,
    )


def _publish_job(
    values: dict[str, Any],
    publisher: Any,
    host: Callable[[], Any],
    reader: Any,
    allocation: Any,
    checker: Any,
) -> Any:
    from exporters.miner.publish import MinerPublishJob
    from exporters.miner.specs import UNKNOWN

    def port_open() -> bool | None:
        last = checker.last if checker is not None else None
        return last.open if last is not None else None

    return MinerPublishJob(
        publisher,
        host=host,
        gpus=(lambda: reader.snapshot()) if reader is not None else (lambda: None),
        allocation=lambda: UNKNOWN if allocation.current is None else allocation.current.validator_hotkey,
        port_open=port_open,
        interval=float(values.get("miner_publish_interval") or DEFAULT_PUBLISH_INTERVAL),
    )


def load_pynvml() -> Any | None:
    """Import nvidia-ml-py's ``pynvml`` lazily; None when it is not installed (NVML then reports down)."""
    try:
        import pynvml
    except ImportError as exc:
        log.debug("cannot import pynvml: %s", exc)
        return None
    return pynvml


def load_workload_resolver(values: dict[str, Any]) -> Any | None:
    """None: the workload collector builds its resolver (``/proc`` + Docker) from ``--workload.*``.
    The demo swaps this for its simulated rental."""
    return None


def run(values: dict[str, Any]) -> int:
    """Serve the miner exporter until SIGTERM/SIGINT."""
    import psutil

    from exporters.core.runtime import setup_logging
    from exporters.core.webconfig import load_web_config

    setup_logging(values["log_level"], values["log_format"])
    check(values)
    web = load_web_config(values["web_config_file"])
    parts = build_exporter(
        values, nvml=load_pynvml(), psutil=psutil, workload_resolver=load_workload_resolver(values)
    )
    try:
        return parts.exporter.serve(values, web)
    finally:
        if parts.publisher is not None:
            parts.publisher.close()
