"""Which workload is on each GPU: cgroup parsing, the read-only Docker client against the fake
Docker Engine API on a unix socket, and the workload collector over the fake NVML."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fakes.docker_engine import FakeContainer, FakeDockerEngine
from fakes.nvml import (
    NVML_ERROR_LIBRARY_NOT_FOUND,
    NVML_ERROR_NO_PERMISSION,
    NVML_ERROR_NOT_SUPPORTED,
    FakeGpu,
    FakeNvml,
    FakeProcess,
    FakeUtilSample,
)
from miner_helpers import flag_values
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from workload_helpers import (
    FIXTURE_ID,
    FIXTURES,
    HOST_V2,
    container_id,
    docker_v1,
    docker_v2,
    fixture,
    socket_dir,
    write_procfs,
)

from exporters.miner import docker_api
from exporters.miner.cgroup import HOST, CgroupOwner, parse_cgroup
from exporters.miner.docker_api import DockerEngine, DockerError
from exporters.miner.nvml import GpuReader, NvmlSession
from exporters.miner.workload import MAX_PROCESSES, PROBLEMS, WorkloadCollector, WorkloadResolver

RENTAL, TEST, CHECK, STRANGER = (container_id(n) for n in range(4))
GiB = 1024**3


@pytest.fixture
def sockets():
    with socket_dir() as d:
        yield d


@pytest.fixture
def engine(sockets: Path):
    fake = FakeDockerEngine(
        sockets / "docker.sock",
        containers=[
            FakeContainer(RENTAL, "ssh-container"),
            FakeContainer(TEST, "ssh-test-container"),
            FakeContainer(CHECK, "sn27-check-container", running=False),
            FakeContainer(STRANGER, "xmrig"),
        ],
    )
    yield fake
    fake.close()


def _series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(series, name: str, **labels: str) -> float | None:
    return series.get((name, tuple(sorted(labels.items()))))


def _scrape(collector: WorkloadCollector) -> dict:
    registry = CollectorRegistry(auto_describe=False)

    class Wrap:
        def collect(self):
            return collector.collect()

        def describe(self):
            return []

    registry.register(Wrap())
    return _series(generate_latest(registry).decode())


def _problems(series) -> set[str]:
    return {
        r for r in PROBLEMS if _value(series, "opencompute_gpu_process_attribution_problem", reason=r) == 1
    }


def _collector(fake: FakeNvml, resolver: WorkloadResolver) -> WorkloadCollector:
    return WorkloadCollector(GpuReader(NvmlSession(fake), max_age=0), resolver)


# -- cgroup parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "runtime"),
    [
        ("v1_docker_cgroupfs", "docker"),
        ("v1_docker_systemd", "docker"),
        ("v2_docker_systemd", "docker"),
        ("v2_docker_cgroupfs", "docker"),
        ("v2_docker_rootless", "docker"),
        ("v2_docker_in_docker", "docker"),
        ("v1_containerd_kubepods", "containerd"),
        ("v2_containerd_kubepods", "containerd"),
        ("v2_crio", "crio"),
        ("v2_podman", "podman"),
    ],
)
def test_a_container_process_is_traced_to_its_runtime_and_full_id(name: str, runtime: str) -> None:
    assert parse_cgroup(fixture(name)) == CgroupOwner(runtime, FIXTURE_ID)


@pytest.mark.parametrize("name", ["v1_host", "v2_host_service", "v2_host_root"])
def test_a_process_in_no_container_is_a_host_process(name: str) -> None:
    assert parse_cgroup((FIXTURES / f"{name}.txt").read_text()) == HOST


def test_a_path_that_only_looks_like_an_id_is_not_a_container() -> None:
    assert parse_cgroup("0::/system.slice/docker-abc.scope\n") == HOST
    assert parse_cgroup("0::/docker/" + "g" * 64 + "\n") == HOST
    assert parse_cgroup("garbage\n\n:::\n") == HOST


# -- the read-only Docker client --------------------------------------------------------------------


def test_the_client_negotiates_the_api_version_and_lists_running_containers(engine) -> None:
    client = DockerEngine(str(engine.socket_path))
    assert client.running_containers() == {
        RENTAL: "ssh-container",
        TEST: "ssh-test-container",
        STRANGER: "xmrig",
    }
    assert client.container_name(CHECK) == "sn27-check-container"  # stopped, still inspectable
    assert client.container_name(container_id(99)) is None  # 404: No such container
    assert engine.paths() == [
        "/version",
        "/v1.47/containers/json",
        f"/v1.47/containers/{CHECK}/json",
        f"/v1.47/containers/{container_id(99)}/json",
    ]


def test_the_client_only_ever_sends_get(engine) -> None:
    client = DockerEngine(str(engine.socket_path))
    client.running_containers()
    client.container_name(RENTAL)
    assert {method for method, _ in engine.requests} == {"GET"}
    source = Path(docker_api.__file__).read_text()
    assert re.findall(r"\.request\((\S+?),", source) == ['"GET"']  # the one request call, hard-coded


def test_a_missing_socket_is_reason_socket_missing(sockets: Path) -> None:
    with pytest.raises(DockerError) as err:
        DockerEngine(str(sockets / "nothing.sock")).running_containers()
    assert err.value.reason == "socket_missing"


def test_a_slow_daemon_times_out_with_reason_error(engine) -> None:
    engine.delay = 1.0
    with pytest.raises(DockerError) as err:
        DockerEngine(str(engine.socket_path), timeout=0.2).running_containers()
    assert err.value.reason == "error"


def test_a_failing_daemon_is_reason_error(engine) -> None:
    engine.fail_status = 500
    with pytest.raises(DockerError, match="HTTP 500") as err:
        DockerEngine(str(engine.socket_path)).running_containers()
    assert err.value.reason == "error"


def test_a_socket_the_user_may_not_open_is_reason_permission_denied(engine, sockets: Path) -> None:
    """The socket is root-only, like /var/run/docker.sock; a forked child drops to nobody (as root,
    file modes would not apply) and reports the reason through a pipe."""
    os.chmod(sockets, 0o755)
    os.chmod(engine.socket_path, 0o600)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            if os.geteuid() == 0:
                os.setuid(65534)
            DockerEngine(str(engine.socket_path)).running_containers()
            os.write(write_end, b"no error")
        except DockerError as exc:
            os.write(write_end, exc.reason.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    assert os.read(read_end, 100).decode() == "permission_denied"
    os.close(read_end)


# -- the collector ----------------------------------------------------------------------------------


def _rental_host(tmp_path: Path, engine) -> tuple[FakeNvml, WorkloadResolver]:
    """GPU 0: the renter (2 processes, one C+G) and a stranger container; GPU 1: a check and a host
    process; GPU 2: idle."""
    procfs = write_procfs(
        tmp_path / "proc",
        {
            101: docker_v2(RENTAL),
            102: docker_v1(RENTAL),
            201: docker_v2(STRANGER),
            301: docker_v2(TEST),
            401: HOST_V2,
        },
    )
    gpus = [
        FakeGpu(
            uuid="GPU-0",
            processes=[FakeProcess(101, 30 * GiB), FakeProcess(102, 10 * GiB), FakeProcess(201, 2 * GiB)],
            graphics_processes=[FakeProcess(101, 30 * GiB)],
            util_samples=[
                FakeUtilSample(101, 1_000, 40),
                FakeUtilSample(101, 2_000, 60),  # newer sample of the same process wins
                FakeUtilSample(102, 2_000, 30),
                FakeUtilSample(201, 2_000, 5),
            ],
        ),
        FakeGpu(uuid="GPU-1", processes=[FakeProcess(301, 1 * GiB), FakeProcess(401, GiB // 2)]),
        FakeGpu(uuid="GPU-2"),
    ]
    resolver = WorkloadResolver(DockerEngine(str(engine.socket_path)), procfs=procfs, clock=lambda: 1234.0)
    return FakeNvml(gpus), resolver


def test_processes_memory_and_utilization_are_reported_by_gpu_and_workload(tmp_path: Path, engine) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    collector = _collector(fake, resolver)
    assert resolver.refresh()  # running containers are known without a scrape having met them
    s = _scrape(collector)
    g0 = {"gpu": "0", "uuid": "GPU-0"}
    assert _value(s, "opencompute_gpu_processes", **g0, workload="rental") == 2  # 101 counted once
    assert _value(s, "opencompute_gpu_processes", **g0, workload="other_container") == 1
    assert _value(s, "opencompute_gpu_processes", **g0, workload="host") == 0
    assert _value(s, "opencompute_gpu_process_memory_used_bytes", **g0, workload="rental") == 40 * GiB
    g1 = {"gpu": "1", "uuid": "GPU-1"}
    assert _value(s, "opencompute_gpu_processes", **g1, workload="check") == 1
    assert _value(s, "opencompute_gpu_processes", **g1, workload="host") == 1
    assert _value(s, "opencompute_gpu_processes", gpu="2", uuid="GPU-2", workload="rental") == 0
    assert _value(s, "opencompute_gpu_process_utilization_ratio", **g0, workload="rental") == pytest.approx(
        0.9
    )
    assert _value(s, "opencompute_gpu_process_utilization_ratio", **g0, workload="other_container") == 0.05
    assert _value(s, "opencompute_gpu_process_attribution_complete") == 1
    assert _problems(s) == set()
    assert _value(s, "opencompute_miner_docker_up") == 1
    assert _value(s, "opencompute_miner_docker_last_refresh_timestamp_seconds") == 1234.0
    assert _value(s, "opencompute_miner_containers", workload="rental") == 1
    assert _value(s, "opencompute_miner_containers", workload="check") == 1  # the stopped one is not counted
    assert _value(s, "opencompute_miner_containers", workload="other_container") == 1
    # No sample newer than the last one: utilisation 0, not the old value again.
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_process_utilization_ratio", **g0, workload="rental") == 0


def test_no_pid_or_container_id_label_is_ever_exported(tmp_path: Path, engine) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    resolver.refresh()
    s = _scrape(_collector(fake, resolver))
    labels = {k for _, ls in s for k, _ in ls}
    assert labels == {"gpu", "uuid", "workload", "reason"}
    assert not [v for _, ls in s for _, v in ls if v in (RENTAL, "101")]


def test_docker_is_never_asked_on_a_scrape(tmp_path: Path, engine) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    collector = _collector(fake, resolver)
    resolver.refresh()
    before = len(engine.requests)
    for _ in range(5):
        _scrape(collector)
    assert len(engine.requests) == before


def test_a_container_started_after_the_refresh_is_unknown_until_the_next_one(tmp_path: Path, engine) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    collector = _collector(fake, resolver)
    resolver.refresh()
    late = container_id(7)
    write_procfs(tmp_path / "proc", {501: docker_v2(late)})
    fake.gpus[2].processes = [FakeProcess(501)]
    engine.containers.append(FakeContainer(late, "ssh-container"))
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_processes", gpu="2", uuid="GPU-2", workload="unknown") == 1
    assert _value(s, "opencompute_gpu_process_attribution_complete") == 0
    assert _problems(s) == set()  # Docker is fine: only not looked up yet
    resolver.refresh()
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_processes", gpu="2", uuid="GPU-2", workload="rental") == 1


def test_a_pid_cgroup_gone_from_docker_is_inspected_once_and_then_other_container(
    tmp_path: Path, engine
) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    collector = _collector(fake, resolver)
    ghost = container_id(8)
    write_procfs(tmp_path / "proc", {601: docker_v2(ghost)})
    fake.gpus[2].processes = [FakeProcess(601)]
    _scrape(collector)
    resolver.refresh()
    assert f"/v1.47/containers/{ghost}/json" in engine.paths()
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_processes", gpu="2", uuid="GPU-2", workload="other_container") == 1
    resolver.refresh()
    assert engine.paths().count(f"/v1.47/containers/{ghost}/json") == 1


def test_without_a_docker_socket_container_processes_are_unknown_never_strangers(
    tmp_path: Path, sockets
) -> None:
    procfs = write_procfs(tmp_path / "proc", {101: docker_v2(RENTAL), 401: HOST_V2})
    fake = FakeNvml([FakeGpu(uuid="GPU-0", processes=[FakeProcess(101), FakeProcess(401)])])
    resolver = WorkloadResolver(DockerEngine(str(sockets / "docker.sock")), procfs=procfs)
    assert not resolver.refresh()
    s = _scrape(_collector(fake, resolver))
    g0 = {"gpu": "0", "uuid": "GPU-0"}
    assert _value(s, "opencompute_gpu_processes", **g0, workload="unknown") == 1
    assert _value(s, "opencompute_gpu_processes", **g0, workload="other_container") == 0
    assert _value(s, "opencompute_gpu_processes", **g0, workload="host") == 1
    assert _problems(s) == {"docker_socket_missing"}
    assert _value(s, "opencompute_miner_docker_up") == 0
    assert _value(s, "opencompute_miner_docker_last_refresh_timestamp_seconds") == 0
    assert not [k for k in s if k[0] == "opencompute_miner_containers"]


def test_a_pid_outside_our_pid_namespace_is_unknown_with_its_reason(tmp_path: Path, engine) -> None:
    fake = FakeNvml([FakeGpu(uuid="GPU-0", processes=[FakeProcess(999_999)])])
    resolver = WorkloadResolver(
        DockerEngine(str(engine.socket_path)), procfs=write_procfs(tmp_path / "p", {})
    )
    resolver.refresh()
    s = _scrape(_collector(fake, resolver))
    assert _value(s, "opencompute_gpu_processes", gpu="0", uuid="GPU-0", workload="unknown") == 1
    assert _problems(s) == {"proc_pid_not_visible"}


def test_a_reused_pid_is_reattributed_by_the_background_refresh(tmp_path: Path, engine) -> None:
    fake, resolver = _rental_host(tmp_path, engine)
    collector = _collector(fake, resolver)
    resolver.refresh()
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_processes", gpu="1", uuid="GPU-1", workload="host") == 1
    write_procfs(tmp_path / "proc", {401: docker_v2(STRANGER)})  # pid 401 now a stranger's process
    assert (
        _value(_scrape(collector), "opencompute_gpu_processes", gpu="1", uuid="GPU-1", workload="host") == 1
    )
    resolver.refresh()
    s = _scrape(collector)
    assert _value(s, "opencompute_gpu_processes", gpu="1", uuid="GPU-1", workload="host") == 0
    assert _value(s, "opencompute_gpu_processes", gpu="1", uuid="GPU-1", workload="other_container") == 1


def test_mig_is_a_reason_and_per_process_memory_and_utilization_are_not_invented(
    tmp_path: Path, engine
) -> None:
    procfs = write_procfs(tmp_path / "proc", {101: docker_v2(RENTAL)})
    mig = FakeGpu(
        uuid="GPU-MIG",
        mig_mode=(1, 1),
        processes=[FakeProcess(101, None, gpu_instance_id=1, compute_instance_id=0)],
        util_samples=[FakeUtilSample(101, 5, 50)],
    )
    fake = FakeNvml([mig])
    resolver = WorkloadResolver(DockerEngine(str(engine.socket_path)), procfs=procfs)
    resolver.refresh()
    s = _scrape(_collector(fake, resolver))
    assert _value(s, "opencompute_gpu_processes", gpu="0", uuid="GPU-MIG", workload="rental") == 1
    assert not [k for k in s if k[0].startswith("opencompute_gpu_process_memory_used")]
    assert not [k for k in s if k[0].startswith("opencompute_gpu_process_utilization")]
    assert _problems(s) == {"mig"}
    assert fake.calls["nvmlDeviceGetProcessUtilization"] == 0


@pytest.mark.parametrize("code", [NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_NO_PERMISSION])
def test_a_gpu_that_cannot_list_processes_is_a_reason_and_is_not_asked_again(
    tmp_path: Path, engine, code
) -> None:
    fake = FakeNvml(
        [
            FakeGpu(uuid="GPU-0", errors={"nvmlDeviceGetComputeRunningProcesses": code}),
            FakeGpu(uuid="GPU-1", processes=[FakeProcess(401)]),
        ]
    )
    resolver = WorkloadResolver(
        DockerEngine(str(engine.socket_path)), procfs=write_procfs(tmp_path / "p", {401: HOST_V2})
    )
    collector = _collector(fake, resolver)
    for _ in range(3):
        s = _scrape(collector)
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 1 + 3  # GPU-0 once, GPU-1 every scrape
    assert not [k for k in s if dict(k[1]).get("uuid") == "GPU-0"]
    assert _value(s, "opencompute_gpu_processes", gpu="1", uuid="GPU-1", workload="host") == 1
    assert _problems(s) == {"nvml_no_process_support"}


def test_nvml_down_reports_the_reason_and_no_gpu_series(tmp_path: Path, engine) -> None:
    fake = FakeNvml([FakeGpu()], init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    resolver = WorkloadResolver(DockerEngine(str(engine.socket_path)), procfs=tmp_path)
    s = _scrape(_collector(fake, resolver))
    assert not [k for k in s if k[0] == "opencompute_gpu_processes"]
    assert _problems(s) == {"nvml_unavailable"}
    assert _value(s, "opencompute_gpu_process_attribution_complete") == 0


def test_series_stay_bounded_however_many_processes_run(tmp_path: Path, engine) -> None:
    pids = range(1000, 1000 + MAX_PROCESSES + 50)
    procfs = write_procfs(tmp_path / "proc", dict.fromkeys(pids, HOST_V2))
    fake = FakeNvml([FakeGpu(uuid="GPU-0", processes=[FakeProcess(p, 1) for p in pids])])
    resolver = WorkloadResolver(DockerEngine(str(engine.socket_path)), procfs=procfs)
    resolver.refresh()
    s = _scrape(_collector(fake, resolver))
    assert len([k for k in s if k[0] == "opencompute_gpu_processes"]) == 5
    assert _value(s, "opencompute_gpu_processes", gpu="0", uuid="GPU-0", workload="host") == MAX_PROCESSES
    assert _problems(s) == {"process_limit"}


# -- wiring -----------------------------------------------------------------------------------------


def test_the_cli_wires_the_collector_the_refresh_loop_and_the_names(
    tmp_path: Path, engine, make_exporter
) -> None:
    write_procfs(tmp_path / "proc", {101: docker_v2(STRANGER)})
    fake = FakeNvml([FakeGpu(uuid="GPU-0", processes=[FakeProcess(101)])])
    parts = make_exporter(
        fake,
        f"--workload.docker-socket={engine.socket_path}",
        f"--workload.procfs={tmp_path / 'proc'}",
        "--workload.rental-containers=xmrig, other-renter",
        "--workload.refresh-interval=5s",
    )
    loop = next(loop for loop in parts.loops if loop.name == "workload-refresh")
    assert loop.interval == 5.0
    loop.func()
    s = _series(generate_latest(parts.exporter.registry).decode())
    assert _value(s, "opencompute_gpu_processes", gpu="0", uuid="GPU-0", workload="rental") == 1
    assert _value(s, "opencompute_scrape_collector_success", collector="workload") == 1


def test_the_collector_can_be_switched_off(make_exporter) -> None:
    parts = make_exporter(FakeNvml([FakeGpu()]), "--no-collector.workload")
    assert parts.workload is None
    assert "workload-refresh" not in [loop.name for loop in parts.loops]
    assert b"opencompute_gpu_processes" not in generate_latest(parts.exporter.registry)


def test_an_empty_container_name_list_is_a_config_error() -> None:
    from exporters.core.config import ConfigError

    with pytest.raises(ConfigError, match=r"workload\.rental-containers"):
        flag_values("--workload.rental-containers= , ")
