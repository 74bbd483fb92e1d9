"""``opencompute-exporter network``: the verified network-wide view of all runs, port 9929.

Nothing heavy is imported at module top (bittensor and wandb load on first use), so ``--help``
stays fast. :func:`build_exporter` takes the store and the validator source as arguments so
tests, the demo and the benchmark inject their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from exporters.core.config import (
    Flag,
    FlagSet,
    collector_flags,
    enabled_collectors,
    positive_duration,
    web_flags,
)
from exporters.core.identity import store_flags
from exporters.core.runtime import Exporter, Loop
from exporters.network.chain import ChainReader, build_reader, chain_client, chain_flags
from exporters.network.ours import OurHotkeys, OursCollector, our_flags, ss58_list
from exporters.subnet.trust import build_resolver, chain_source, trust_flags
from exporters.subnet.views import NI_PENALTY_AUTHORITY

log = logging.getLogger(__name__)

DEFAULT_PORT = 9929
DEFAULT_STATE_DIR = "~/.opencompute/network"

COLLECTORS: tuple[tuple[str, bool, str], ...] = (
    ("refresh", True, "refresh health per role and state-store requests."),
    ("runs", True, "run verification outcomes, bad input and validator trust."),
    ("allocation", True, "allocated miners and how many validators claim each."),
    ("penalties", True, "penalized miners (both list shapes) and which penalties are enforced."),
    ("stats", True, "dominant proof-of-GPU entry per uid and validator agreement."),
    ("specs", True, "miner-published GPU specs and claim mismatches."),
    ("divergence", True, "where a strict reading differs from the network's, and why."),
    ("ours", True, "the hotkeys declared as yours (--network.our-hotkeys), for alert and dashboard joins."),
    ("attestation", True, "neuron-published vs exporter-signed allocations and GPU specs, per hotkey."),
    ("inputs", True, "store, trust source and runs present; /health is degraded without them."),
    (
        "chain",
        True,
        "every uid of the subnet from the chain (stake, emission, trust, weights, immunity, axon).",
    ),
)


def flags() -> FlagSet:
    """Every flag of the network exporter (each mirrored by an OPENCOMPUTE_* env var)."""
    fs = FlagSet()
    fs.add(*web_flags(DEFAULT_PORT))
    fs.add(*collector_flags(COLLECTORS))
    fs.add(*store_flags())
    fs.add(*our_flags())
    fs.add(*chain_flags())
    fs.add(
        *trust_flags("network", DEFAULT_STATE_DIR),
        Flag(
            "network.validator-refresh-interval",
            "How often validator runs (stats, allocations, penalties) and the validator set are refreshed.",
            default=300.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "network.miner-refresh-interval",
            "How often miner runs (specs) are refreshed.",
            default=1800.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "network.refresh-timeout",
            "Give up on a refresh after this long; the previous snapshot keeps being served.",
            default=120.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "network.penalty-authority",
            "Comma-separated validator hotkeys (ss58) whose signed penalized_hotkeys_checklist is "
            "enforced, as the original validator enforces the one hotkey it hardcodes (NI's). Only a "
            "trusted validator's verified run counts.",
            default=(NI_PENALTY_AUTHORITY,),
            convert=ss58_list("network.penalty-authority", allow_empty=False),
            metavar="HOTKEY[,HOTKEY...]",
        ),
        Flag(
            "network.full-resync-interval",
            "Re-read every run (not only recently updated ones) this often, to drop deleted runs.",
            default=6 * 3600.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
    )
    return fs


@dataclass
class NetworkParts:
    """What :func:`build_exporter` assembled, so tests, the demo and benchmarks reach the pieces."""

    exporter: Exporter
    refresher: Any
    loops: list[Loop] = field(default_factory=list)
    ours: OurHotkeys = field(default_factory=OurHotkeys)
    attestation: Any = None
    chain: ChainReader | None = None


def build_exporter(
    values: dict[str, Any],
    *,
    store: Any,
    source: Any | None,
    verifier: Any | None = None,
    chain: Any | None = None,
) -> NetworkParts:
    """Assemble refresher, collectors and refresh loops from resolved flag values.

    ``chain`` is what the chain collector reads through (:class:`~exporters.network.chain.ChainClient`
    in production, the demo's simulated chain, a client over a fake ``Substrate`` in tests); None
    leaves the chain collector and its loop out.
    """
    from exporters.network.collectors import build_collectors
    from exporters.network.refresh import NetworkRefresher, TimedRefresh

    resolver = build_resolver(values, "network", source)
    refresher = NetworkRefresher(
        store,
        resolver,
        netuid=int(values.get("netuid", 27)),
        max_run_age=float(values.get("network_max_run_age") or 86400.0),
        full_resync_interval=float(values.get("network_full_resync_interval") or 6 * 3600.0),
        verifier=verifier,
        penalty_authorities=values.get("network_penalty_authority") or (NI_PENALTY_AUTHORITY,),
    )
    timeout = float(values.get("network_refresh_timeout") or 120.0)
    loops = [
        Loop(
            "refresh-validator",
            float(values.get("network_validator_refresh_interval") or 300.0),
            TimedRefresh(refresher, "validator", timeout),
        ),
        Loop(
            "refresh-miner",
            float(values.get("network_miner_refresh_interval") or 1800.0),
            TimedRefresh(refresher, "miner", timeout),
        ),
    ]
    enabled = enabled_collectors(values, COLLECTORS)
    collectors = build_collectors(lambda: refresher.snapshot, store, enabled)
    ours = OurHotkeys.from_values(values)
    if enabled.get("ours", True):
        collectors.append(OursCollector(ours))
    attestation = _attestation(values, store, refresher, enabled, collectors, loops)
    reader = None
    if chain is not None and enabled.get("chain", True):
        from exporters.network.chain import ChainCollector

        reader = build_reader(values, ours, chain)
        interval = float(values.get("network_chain_refresh_interval") or 300.0)
        loops.append(Loop("refresh-chain", interval, reader))
        collectors.append(ChainCollector(reader))
    exporter = Exporter("network", collectors, loops=loops)
    return NetworkParts(exporter, refresher, loops, ours, attestation=attestation, chain=reader)


def _attestation(
    values: dict[str, Any],
    store: Any,
    refresher: Any,
    enabled: dict[str, bool],
    collectors: list,
    loops: list,
) -> Any:
    """Neuron runs vs our runs (exporters/network/attestation.py) and the degraded-inputs check."""
    from exporters.network.attestation import (
        AttestationCollector,
        AttestationRefresher,
        NetworkHealthCollector,
        NetworkInputsCollector,
    )

    if enabled.get("inputs", True):
        inputs = NetworkInputsCollector(lambda: refresher.snapshot)
        collectors.extend([inputs, NetworkHealthCollector(inputs)])
    if not enabled.get("attestation", True):
        return None

    def registered() -> tuple[frozenset[str], Any]:
        trust = refresher.snapshot.trust
        return trust.validators, trust.uids

    attestation = AttestationRefresher(
        store,
        registered,
        netuid=int(values.get("netuid", 27)),
        max_run_age=float(values.get("network_max_run_age") or 86400.0),
        neuron_runs=refresher.records,  # the runs the views were built from: no second read
    )
    refresher.envelope_lookup = attestation.envelope  # the strict reading binds our own runs
    interval = float(values.get("network_validator_refresh_interval") or 300.0)
    loops.append(Loop("attestation", interval, attestation.refresh))
    collectors.append(AttestationCollector(attestation))
    return attestation


def run(values: dict[str, Any]) -> int:
    """Serve the network exporter until SIGTERM/SIGINT."""
    from exporters.core.identity import build_store
    from exporters.core.runtime import setup_logging
    from exporters.core.webconfig import load_web_config

    setup_logging(values["log_level"], values["log_format"])
    web = load_web_config(values["web_config_file"])
    store = build_store(values)
    parts = build_exporter(values, store=store, source=chain_source(values), chain=chain_client(values))
    return parts.exporter.serve(values, web)
