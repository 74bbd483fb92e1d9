"""A golden /metrics of the miner exporter (fake NVML, pinned host and clock), linted by promtool.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/miner/test_miner_golden.py``
and review the diff. Two machine-dependent values are normalised: collector durations (to 0) and the
Python version label of the build info.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import psutil
from fakes.docker_engine import FakeContainer, FakeDockerEngine
from fakes.nvml import NVML_ERROR_GPU_IS_LOST, FakeGpu, FakeNvml, FakeProcess, FakeUtilSample
from helpers.golden import assert_matches_golden
from helpers.promtool import assert_promtool_clean
from miner_helpers import PINNED_HOST, flag_values, metagraph, publish_validator_run
from prometheus_client import generate_latest
from workload_helpers import HOST_V2, container_id, docker_v1, docker_v2, socket_dir, write_procfs

from exporters.core.keys import keypair_from_uri
from exporters.miner.cli import build_exporter

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "miner.prom"
NOW = 1_700_000_000.0
GiB = 1024**3
RENTAL, STRANGER = container_id(1), container_id(2)


def golden_gpus() -> list[FakeGpu]:
    """An H100 busy with the rental and power-capped, an A100 with ECC and remapped rows and a
    stranger's container, a consumer card with fans, retired pages, a host display server and no
    energy counter, and a GPU that is lost mid-scrape."""
    return [
        FakeGpu(
            uuid="GPU-11111111-1111-1111-1111-111111111111",
            clock_reasons=0x004,
            util_gpu=97,
            processes=[FakeProcess(4101, 60 * GiB), FakeProcess(4102, 12 * GiB)],
            util_samples=[FakeUtilSample(4101, 1_700_000_000_000_000, 88), FakeUtilSample(4102, 1, 9)],
        ),
        FakeGpu(
            name="NVIDIA A100-SXM4-80GB",
            uuid="GPU-22222222-2222-2222-2222-222222222222",
            pci_bus_id="00000000:41:00.0",
            vbios="92.00.45.00.06",
            ecc_corrected=12,
            ecc_uncorrected=1,
            remapped_rows=(3, 1, 0, 0),
            unsupported={"nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus"},
            processes=[FakeProcess(5201, 8 * GiB)],
            util_samples=[FakeUtilSample(5201, 1_700_000_000_000_000, 35)],
        ),
        FakeGpu(
            name="NVIDIA GeForce RTX 4090",
            uuid="GPU-33333333-3333-3333-3333-333333333333",
            pci_bus_id="00000000:81:00.0",
            memory_total=24 * 1024**3,
            fans_percent=(35, 40),
            pstate=2,
            clock_reasons=0x001,
            retired_sbe=2,
            unsupported={
                "nvmlDeviceGetTotalEnergyConsumption",
                "nvmlDeviceGetTotalEccErrors",
                "nvmlDeviceGetProcessUtilization",
            },
            mig_mode=None,
            graphics_processes=[FakeProcess(1800, 256 * 1024**2)],
        ),
        FakeGpu(
            uuid="GPU-44444444-4444-4444-4444-444444444444",
            pci_bus_id="00000000:C1:00.0",
            errors={"nvmlDeviceGetUtilizationRates": NVML_ERROR_GPU_IS_LOST},
        ),
    ]


def render(tmp_path: Path) -> str:
    with socket_dir() as sockets:
        docker = FakeDockerEngine(
            sockets / "docker.sock",
            containers=[FakeContainer(RENTAL, "ssh-container"), FakeContainer(STRANGER, "stranger")],
        )
        try:
            return _render(tmp_path, docker)
        finally:
            docker.close()


def _render(tmp_path: Path, docker: FakeDockerEngine) -> str:
    procfs = write_procfs(
        tmp_path / "proc",
        {4101: docker_v2(RENTAL), 4102: docker_v1(RENTAL), 5201: docker_v2(STRANGER), 1800: HOST_V2},
    )
    listener = socket.create_server(("127.0.0.1", 0))
    alice = keypair_from_uri("//Alice").ss58_address
    # //validator0 (trusted: permit, 5e4 stake) has allocated Alice, signed at the pinned time.
    validator = publish_validator_run(
        tmp_path / "state.db", tmp_path, "//validator0", [alice], clock=lambda: NOW
    )
    fake = FakeNvml(golden_gpus())
    values = flag_values(
        "--collector.pcie",
        "--miner.external-ip=127.0.0.1",
        f"--miner.port={listener.getsockname()[1]}",
        "--hotkey.uri=//Alice",  # a real dev key: identity and publish metrics, nothing flushed
        f"--state.sqlite-path={tmp_path / 'state.db'}",
        f"--publish.outbox-path={tmp_path / 'outbox.db'}",
        f"--miner.state-dir={tmp_path / 'metagraph'}",
        f"--workload.docker-socket={docker.socket_path}",
        f"--workload.procfs={procfs}",
    )
    host = lambda: PINNED_HOST  # noqa: E731
    source = metagraph((validator, 5.0e4), miners=(alice,))
    parts = build_exporter(
        values, nvml=fake, psutil=psutil, host_reader=host, clock=lambda: NOW, validator_source=source
    )
    try:
        parts.port_checker.check()
    finally:
        listener.close()
    assert parts.allocation.refresh()
    assert parts.workload.refresh()
    parts.watcher.poll_once()  # arm the event set
    fake.emit_xid(2, 13)
    fake.emit_xid(2, 13)
    fake.emit_xid(0, 79)
    for _ in range(3):
        parts.watcher.poll_once()
    text = generate_latest(parts.exporter.registry).decode()
    parts.publisher.close()
    text = re.sub(r"(opencompute_scrape_collector_duration_seconds\{[^}]*\}) \S+", r"\1 0.0", text)
    return re.sub(r'pythonversion="[^"]*"', 'pythonversion="X"', text)


def test_metrics_match_the_golden_file(tmp_path):
    assert_matches_golden(render(tmp_path), GOLDEN)


def test_golden_file_passes_promtool_check_metrics():
    assert_promtool_clean(GOLDEN)
