"""Publishing the miner's run config through core.publish, into a real SQLite store with a real key."""

from __future__ import annotations

import time

import psutil
from bittensor_core import Keypair
from fakes.nvml import FakeGpu, FakeNvml
from miner_helpers import PINNED_HOST, flag_values, metagraph, publish_validator_run, value

from exporters.core.signing import Outcome, verify_run
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.miner.cli import build_exporter

ALICE = Keypair.create_from_uri("//Alice")
VALIDATOR = Keypair.create_from_uri("//validator0").ss58_address


def publishing_exporter(tmp_path, *argv):
    """The miner as //Alice; //validator0 (stake 5e4) is the only trusted validator."""
    values = flag_values(
        "--hotkey.uri=//Alice",
        f"--state.sqlite-path={tmp_path / 'state.db'}",
        f"--publish.outbox-path={tmp_path / 'outbox.db'}",
        f"--miner.state-dir={tmp_path / 'metagraph'}",
        *argv,
    )
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    source = metagraph((VALIDATOR, 5.0e4), miners=(ALICE.ss58_address,))
    return build_exporter(
        values, nvml=fake, psutil=psutil, host_reader=lambda: PINNED_HOST, validator_source=source
    )


def allocate(tmp_path, *miners):
    """//validator0 publishes, signed, that it has allocated ``miners``."""
    publish_validator_run(tmp_path / "state.db", tmp_path, "//validator0", list(miners))


def published(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    [run] = store.read_exporter_runs("miner", 27)  # our own run: the original never reads it
    result = verify_run(
        run, entity_project="neuralinternet/opencompute", netuid=27, role="miner", now=time.time()
    )
    return run, result


def test_without_a_wallet_nothing_is_published_and_the_metric_says_so(tmp_path):
    parts = build_exporter(flag_values(), nvml=FakeNvml([]), psutil=psutil, host_reader=lambda: PINNED_HOST)
    assert parts.publisher is None
    assert [loop.name for loop in parts.loops] == ["xid-events", "workload-refresh"]
    assert value(parts, "opencompute_publish_enabled") == 0


def test_specs_allocation_and_port_state_are_published_signed(tmp_path):
    allocate(tmp_path, ALICE.ss58_address)
    parts = publishing_exporter(tmp_path)
    assert {"miner-payload", "publish-flush", "allocation-refresh"} <= {loop.name for loop in parts.loops}
    assert parts.allocation.refresh()
    assert parts.publish_job.tick()
    run, result = published(tmp_path)
    assert result.outcome is Outcome.VALID_V2
    assert result.payload["allocated"] == VALIDATOR
    assert "is_port_open" not in result.payload  # no port check configured: nothing measured
    specs = result.payload["specs"]
    assert specs["gpu"]["count"] == 2 and specs["gpu"]["details"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert specs["cpu"] == {"count": 32, "frequency": 2450.0}
    assert result.hotkey == ALICE.ss58_address and set(run.config) == {"opencompute"}
    assert run.name == f"opencompute-exporter-miner-{ALICE.ss58_address}"
    assert (
        value(parts, "opencompute_identity_info", role="miner", hotkey=ALICE.ss58_address, netuid="27") == 1
    )
    assert value(parts, "opencompute_publish_attempts_total") == 1
    assert value(parts, "opencompute_publish_sequence") >= 1
    parts.publisher.close()


def test_an_allocation_change_is_published_at_once_and_nothing_else_before_the_interval(tmp_path):
    allocate(tmp_path)  # //validator0 has allocated nobody yet
    parts = publishing_exporter(tmp_path)
    assert parts.allocation.refresh()
    assert parts.publish_job.tick()
    assert published(tmp_path)[1].payload["allocated"] is None
    assert not parts.publish_job.tick()  # unchanged, interval (30 min) not over
    allocate(tmp_path, ALICE.ss58_address)
    assert not parts.publish_job.tick()  # the validator's run changed, but no refresh has seen it yet
    assert parts.allocation.refresh()
    assert parts.publish_job.tick()
    _, result = published(tmp_path)
    assert result.payload["allocated"] == VALIDATOR
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=VALIDATOR) == 1
    allocate(tmp_path)  # released: a newer signed run without us
    assert parts.allocation.refresh()
    assert parts.publish_job.tick()
    assert published(tmp_path)[1].payload["allocated"] is None
    parts.publisher.close()


def test_an_unknown_allocation_is_left_out_of_the_payload_until_a_refresh_succeeds(tmp_path):
    allocate(tmp_path, ALICE.ss58_address)
    parts = publishing_exporter(tmp_path)
    assert parts.publish_job.tick()  # before any allocation refresh: specs only
    _, result = published(tmp_path)
    assert "allocated" not in result.payload and "specs" in result.payload
    assert parts.allocation.refresh()
    assert parts.publish_job.tick()  # unknown -> known is a change: published at once
    assert published(tmp_path)[1].payload["allocated"] == VALIDATOR
    parts.publisher.close()


def _job(tmp_path, gpus):
    from exporters.core.publish import Publisher
    from exporters.miner.publish import MinerPublishJob

    store = SQLiteStateStore(str(tmp_path / "state.db"))
    publisher = Publisher(store, ALICE, role="miner", netuid=27, outbox_path=str(tmp_path / "outbox.db"))
    job = MinerPublishJob(
        publisher,
        host=lambda: PINNED_HOST,
        gpus=gpus,
        allocation=lambda: VALIDATOR,
        port_open=lambda: True,
        interval=0.0,  # every tick publishes
    )
    return job, publisher


def test_an_nvml_outage_keeps_the_last_measured_gpu_specs_so_validators_do_not_deallocate(tmp_path):
    from exporters.miner.nvml import GpuReader, NvmlSession, NvmlSnapshot

    healthy = GpuReader(NvmlSession(FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])), max_age=0)
    current = [healthy.snapshot()]
    job, publisher = _job(tmp_path, lambda: current[0])
    assert job.tick()
    gpu = published(tmp_path)[1].payload["specs"]["gpu"]
    assert gpu["count"] == 2 and gpu["details"][0]["name"] == "NVIDIA H100 80GB HBM3"

    current[0] = NvmlSnapshot(up=False, reason="driver_not_loaded")  # e.g. a driver reload
    assert job.tick()
    _, result = published(tmp_path)
    assert result.payload["specs"]["gpu"] == gpu  # not {}: the original would deallocate on that
    assert result.payload["specs"]["cpu"] == {"count": 32, "frequency": 2450.0}  # the rest is fresh
    publisher.close()

    # A restart while NVML is still down: nothing measured in this process, so no specs are sent
    # and the previously published ones stay in the run.
    job, publisher = _job(tmp_path, lambda: NvmlSnapshot(up=False, reason="driver_not_loaded"))
    assert job.tick()
    _, result = published(tmp_path)
    assert result.payload["specs"]["gpu"] == gpu
    assert result.payload["allocated"] == VALIDATOR and result.payload["is_port_open"] is True
    publisher.close()
