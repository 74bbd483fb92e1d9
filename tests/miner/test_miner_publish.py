"""Publishing the miner's run config through core.publish, into a real SQLite store with a real key."""

from __future__ import annotations

import time

import psutil
from bittensor_core import Keypair
from fakes.nvml import FakeGpu, FakeNvml
from miner_helpers import PINNED_HOST, flag_values, value

from exporters.core.signing import Outcome, verify_run
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.miner.cli import build_exporter

ALICE = Keypair.create_from_uri("//Alice")
VALIDATOR = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"


def publishing_exporter(tmp_path, *argv):
    values = flag_values(
        "--hotkey.uri=//Alice",
        f"--state.sqlite-path={tmp_path / 'state.db'}",
        f"--publish.outbox-path={tmp_path / 'outbox.db'}",
        f"--miner.allocation-file={tmp_path / 'allocation'}",
        *argv,
    )
    fake = FakeNvml([FakeGpu(uuid="GPU-a"), FakeGpu(uuid="GPU-b")])
    return build_exporter(values, nvml=fake, psutil=psutil, host_reader=lambda: PINNED_HOST)


def published(tmp_path):
    store = SQLiteStateStore(str(tmp_path / "state.db"))
    [run] = store.read_runs("miner", 27)
    result = verify_run(
        run, entity_project="neuralinternet/opencompute", netuid=27, role="miner", now=time.time()
    )
    return run, result


def test_without_a_wallet_nothing_is_published_and_the_metric_says_so(tmp_path):
    parts = build_exporter(flag_values(), nvml=FakeNvml([]), psutil=psutil, host_reader=lambda: PINNED_HOST)
    assert parts.publisher is None
    assert [loop.name for loop in parts.loops] == ["xid-events"]
    assert value(parts, "opencompute_publish_enabled") == 0


def test_specs_allocation_and_port_state_are_published_signed(tmp_path):
    (tmp_path / "allocation").write_text(VALIDATOR)
    parts = publishing_exporter(tmp_path)
    assert {"miner-payload", "publish-flush"} <= {loop.name for loop in parts.loops}
    assert parts.publish_job.tick()
    run, result = published(tmp_path)
    assert result.outcome is Outcome.VALID_V2
    assert result.payload["allocated"] == VALIDATOR
    assert "is_port_open" not in result.payload  # no port check configured: nothing measured
    specs = result.payload["specs"]
    assert specs["gpu"]["count"] == 2 and specs["gpu"]["details"][0]["name"] == "NVIDIA H100 80GB HBM3"
    assert specs["cpu"] == {"count": 32, "frequency": 2450.0}
    assert run.config["hotkey"] == ALICE.ss58_address
    assert (
        value(parts, "opencompute_identity_info", role="miner", hotkey=ALICE.ss58_address, netuid="27") == 1
    )
    assert value(parts, "opencompute_publish_attempts_total") == 1
    assert value(parts, "opencompute_publish_sequence") >= 1
    parts.publisher.close()


def test_an_allocation_change_is_published_at_once_and_nothing_else_before_the_interval(tmp_path):
    parts = publishing_exporter(tmp_path)
    assert parts.publish_job.tick()
    assert not parts.publish_job.tick()  # unchanged, interval (30 min) not over
    (tmp_path / "allocation").write_text(VALIDATOR)
    assert parts.publish_job.tick()
    _, result = published(tmp_path)
    assert result.payload["allocated"] == VALIDATOR
    parts.publisher.close()
