"""The simulated NVML: pynvml's surface and errors, plausible moving values, honest labels."""

from __future__ import annotations

import argparse

import psutil
import pynvml
import pytest
from helpers.clock import Clock
from prometheus_client import generate_latest

from exporters.core.config import ConfigError
from exporters.demo.simgpu import SimulatedNvml
from exporters.demo.simgpu_miner import simulation_from_env
from exporters.miner import cli as miner_cli


def started(gpus: int = 4, **kwargs: object) -> SimulatedNvml:
    sim = SimulatedNvml(gpus, **kwargs)  # type: ignore[arg-type]
    sim.nvmlInit()
    return sim


def test_the_simulation_says_it_is_a_simulation_wherever_a_human_looks():
    sim = started(2)
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlSystemGetDriverVersion() == "simulated"
    assert sim.nvmlDeviceGetVbiosVersion(handle) == "simulated"
    assert sim.nvmlDeviceGetUUID(handle).startswith("GPU-5150c0de-")
    assert sim.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"
    assert "simulated" in sim.describe()


def test_errors_are_the_real_pynvml_classes_with_their_return_codes():
    sim = SimulatedNvml(1)
    with pytest.raises(pynvml.NVMLError_Uninitialized) as before_init:
        sim.nvmlDeviceGetCount()
    assert before_init.value.value == pynvml.NVML_ERROR_UNINITIALIZED
    sim.nvmlInit()
    with pytest.raises(pynvml.NVMLError_NotSupported) as unsupported:
        sim.nvmlDeviceGetTemperature(sim.nvmlDeviceGetHandleByIndex(0), 1)
    assert unsupported.value.value == 3
    with pytest.raises(sim.NVMLError_InvalidArgument):
        sim.nvmlDeviceGetHandleByIndex(5)
    assert sim.NVMLError is pynvml.NVMLError


def test_readings_move_over_time_and_stay_within_physical_limits():
    clock = Clock(1_700_000_000.0)
    sim = started(4, clock=clock)
    seen_util = set()
    for step in range(120):
        clock.now += 37.0
        for index in range(4):
            h = sim.nvmlDeviceGetHandleByIndex(index)
            util = sim.nvmlDeviceGetUtilizationRates(h)
            mem = sim.nvmlDeviceGetMemoryInfo(h)
            power = sim.nvmlDeviceGetPowerUsage(h)
            limit = sim.nvmlDeviceGetEnforcedPowerLimit(h)
            temp = sim.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            assert 0 <= util.gpu <= 100 and 0 <= util.memory <= 100, step
            assert mem.used + mem.free == mem.total and 0 < mem.used < mem.total
            assert 0 < power <= limit
            assert 25 <= temp <= 90
            seen_util.add(util.gpu)
    assert len(seen_util) > 20, "utilisation should wander, not sit still"


def test_energy_is_the_integral_of_power_and_never_decreases():
    clock = Clock(1_700_000_000.0)
    sim = started(1, clock=clock)
    h = sim.nvmlDeviceGetHandleByIndex(0)
    first = sim.nvmlDeviceGetTotalEnergyConsumption(h)
    clock.now += 10.0
    second = sim.nvmlDeviceGetTotalEnergyConsumption(h)
    watts_mw = sim.nvmlDeviceGetPowerUsage(h)
    assert second > first
    # 10 s at roughly the current power (mW * s = mJ), within the slow wave's drift.
    assert 0.5 * watts_mw * 10 < second - first < 1.5 * watts_mw * 10


def test_an_xid_arrives_after_the_configured_delay_and_waits_time_out_otherwise():
    clock = Clock(1_700_000_000.0)
    sim = started(2, clock=clock, first_xid_after=3.0, xid_interval=600.0)
    events = sim.nvmlEventSetCreate()
    for index in range(2):
        sim.nvmlDeviceRegisterEvents(
            sim.nvmlDeviceGetHandleByIndex(index), pynvml.nvmlEventTypeXidCriticalError, events
        )
    with pytest.raises(pynvml.NVMLError_Timeout):
        sim.nvmlEventSetWait_v2(events, 0)
    clock.now += 3.5
    event = sim.nvmlEventSetWait_v2(events, 0)
    assert event.eventType == pynvml.nvmlEventTypeXidCriticalError
    assert event.eventData in {13, 31, 43, 63, 94}
    assert sim.nvmlDeviceGetIndex(event.device) in {0, 1}
    with pytest.raises(pynvml.NVMLError_Timeout):  # the next one is minutes away
        sim.nvmlEventSetWait_v2(events, 0)


def test_the_real_miner_collectors_export_the_simulated_gpus():
    parser = argparse.ArgumentParser()
    flagset = miner_cli.flags()
    flagset.install(parser)
    values = flagset.resolve(parser.parse_args(["--no-collector.host", "--no-collector.miner"]), environ={})
    parts = miner_cli.build_exporter(values, nvml=SimulatedNvml(3), psutil=psutil)
    text = generate_latest(parts.exporter.registry).decode()
    assert "opencompute_gpus 3.0" in text
    assert 'driver_version="simulated"' in text
    assert text.count("opencompute_gpu_up{") == 3
    assert 'opencompute_scrape_collector_success{collector="nvml"} 1.0' in text


def test_invalid_simulation_settings_are_reported_together():
    env = {
        "OPENCOMPUTE_SIMGPU_COUNT": "many",
        "OPENCOMPUTE_SIMGPU_MODEL": "b300",
        "OPENCOMPUTE_SIMGPU_FIRST_XID": "-1",
    }
    with pytest.raises(ConfigError) as err:
        simulation_from_env(env)
    text = "\n".join(err.value.problems)
    assert "COUNT" in text and "MODEL" in text and "FIRST_XID" in text


def test_simulation_settings_come_from_the_environment():
    sim = simulation_from_env({"OPENCOMPUTE_SIMGPU_COUNT": "2", "OPENCOMPUTE_SIMGPU_MODEL": "h100-pcie"})
    sim.nvmlInit()
    assert sim.nvmlDeviceGetCount() == 2
    assert sim.nvmlDeviceGetName(sim.nvmlDeviceGetHandleByIndex(1)) == "NVIDIA H100 PCIe"


def test_the_demo_shows_a_rental_on_all_gpus_but_the_last_and_the_check_now_and_then():
    from prometheus_client.parser import text_string_to_metric_families

    clock = Clock(1_750_000_000.0 - 1_750_000_000.0 % 600 + 100)  # outside the check's minute
    sim = SimulatedNvml(4, clock=clock)
    parser = argparse.ArgumentParser()
    flagset = miner_cli.flags()
    flagset.install(parser)
    values = flagset.resolve(parser.parse_args(["--no-collector.host", "--no-collector.miner"]), environ={})
    parts = miner_cli.build_exporter(
        values, nvml=sim, psutil=psutil, workload_resolver=sim.workloads(), clock=clock, snapshot_max_age=0
    )

    def processes() -> dict[tuple[str, str], float]:
        text = generate_latest(parts.exporter.registry).decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return {
            (s.labels["gpu"], s.labels["workload"]): s.value
            for s in fams["opencompute_gpu_processes"].samples
            if s.value
        }, fams

    found, fams = processes()
    assert found == {("0", "rental"): 1.0, ("1", "rental"): 1.0, ("2", "rental"): 1.0}
    util = {s.labels["gpu"]: s.value for s in fams["opencompute_gpu_process_utilization_ratio"].samples}
    assert set(util) == {"0", "1", "2"} and all(0 < v <= 1 for v in util.values())
    clock.now += 600 - 100 + 10  # within the next check minute
    found, fams = processes()
    assert found[("3", "check")] == 1.0
    assert {s.labels["workload"]: s.value for s in fams["opencompute_miner_containers"].samples}["check"] == 1
