"""Helpers for the miner exporter tests: flag values, a pinned host read, scripted fake GPUs, and
validator runs published with real dev keys into a real SQLite store (for the allocation check)."""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fakes.nvml import FakeGpu

from exporters.core.keys import keypair_from_uri
from exporters.core.publish import Publisher
from exporters.core.signing import ENVELOPE_KEY
from exporters.core.state.sqlite_store import SQLiteStateStore
from exporters.miner.cli import MinerParts, flags
from exporters.miner.host import HostSpecs
from exporters.subnet.trust import ChainState, NeuronInfo, StaticValidatorSource

PINNED_HOST = HostSpecs(
    cpu_cores=32,
    cpu_frequency_mhz=2450.0,
    cpu_max_frequency_mhz=3500.0,
    memory_total_bytes=512 * 1024**3,
    memory_available_bytes=400 * 1024**3,
    memory_used_bytes=100 * 1024**3,
    memory_free_bytes=300 * 1024**3,
    swap_total_bytes=8 * 1024**3,
    swap_used_bytes=0,
    swap_free_bytes=8 * 1024**3,
    disk_total_bytes=2 * 1000**4,
    disk_free_bytes=1000**4,
    disk_used_bytes=1000**4,
    has_docker=True,
)


def flag_values(*argv: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Resolve the miner flags exactly as the CLI does (no process environment leaks in)."""
    fs = flags()
    parser = argparse.ArgumentParser()
    fs.install(parser)
    return fs.resolve(parser.parse_args(list(argv)), environ or {})


def two_gpus() -> list[FakeGpu]:
    return [
        FakeGpu(uuid="GPU-aaaa", pci_bus_id="00000000:01:00.0", fans_percent=(30, 45)),
        FakeGpu(
            name="NVIDIA A100-SXM4-80GB",
            uuid="GPU-bbbb",
            pci_bus_id="00000000:41:00.0",
            util_gpu=100,
            temperature=71,
            clock_reasons=0x004 | 0x040,
            ecc_corrected=3,
            ecc_uncorrected=1,
            remapped_rows=(2, 1, 1, 0),
            unsupported={"nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus"},
        ),
    ]


def value(parts: MinerParts, metric: str, /, **labels: str) -> float | None:
    """One sample from the exporter's registry (a full collect, as a scrape does)."""
    return parts.exporter.registry.get_sample_value(metric, labels)


def publish_validator_run(
    state_path: Path,
    outbox_dir: Path,
    uri: str,
    allocated: list[str],
    *,
    clock: Callable[[], float] = time.time,
    mode: str = "full",
) -> str:
    """Publish a validator's ``allocated_hotkeys``: the real Publisher, a real sr25519 dev key,
    ``full`` mode by default (a simulated neuron: the original's top-level keys in its
    ``validator-{hotkey}`` run, plus the v2 envelope) or ``envelope`` mode (what our validator
    exporter does: the list only inside the signed payload, in a run of our own).
    Returns the validator's hotkey."""
    keypair = keypair_from_uri(uri)
    store = SQLiteStateStore(str(state_path))
    outbox = outbox_dir / f"outbox-{uri.strip('/').replace('/', '-')}.db"
    publisher = Publisher(
        store,
        keypair,
        role="validator",
        netuid=27,
        outbox_path=str(outbox),
        mode=mode,
        clock=clock,
        into_neuron_run=mode == "full",
    )
    try:
        publisher.submit({"allocated_hotkeys": allocated, "stats": {}})
        assert publisher.flush() >= 1, "the validator run was not published"
    finally:
        publisher.close()
        store.close()
    return str(keypair.ss58_address)


def tamper_allocation(state_path: Path, validator_hotkey: str, allocated: list[str]) -> None:
    """Rewrite a validator run's list after signing, in the envelope and at the top level alike."""
    store = SQLiteStateStore(str(state_path))
    try:
        [run] = [r for r in store.read_runs("validator", 27) if r.config.get("hotkey") == validator_hotkey]
        envelope = copy.deepcopy(run.config[ENVELOPE_KEY])
        envelope["payload"]["allocated_hotkeys"] = allocated
        store.publish(
            "validator",
            validator_hotkey,
            {"allocated_hotkeys": allocated, ENVELOPE_KEY: envelope},
            target="neuron",
        )
    finally:
        store.close()


def metagraph(*validators: tuple[str, float], miners: tuple[str, ...] = ()) -> StaticValidatorSource:
    """A chain answering with these (validator hotkey, stake) pairs (all permitted) and miners."""
    neurons = {hotkey: NeuronInfo(uid, True, stake) for uid, (hotkey, stake) in enumerate(validators)}
    for hotkey in miners:
        neurons[hotkey] = NeuronInfo(len(neurons), False, 0.0)
    return StaticValidatorSource(ChainState(27, neurons, block=4_000_000))
