"""``opencompute-exporter demo``: a simulated subnet with all three exporters, Prometheus and Alertmanager.

Runs on a laptop or CI box without GPUs, chain or WandB: the state store is the embedded SQLite
one, seeded with signed runs of simulated validators and miners; the validator exporter reads a
simulated ComputeDb; the miner exporter reads SIMULATED GPUs (:mod:`exporters.demo.simgpu`).
Prometheus and Alertmanager (Debian packages ``prometheus`` and ``prometheus-alertmanager``) are
started on loopback with the generated alert rules when installed; without them the exporters
still run and a log line says what is missing. See docs/demo.md.
"""

from __future__ import annotations

import logging
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exporters.core.config import (
    Flag,
    FlagSet,
    log_flags,
    parse_duration,
    parse_listen_address,
    positive_duration,
    positive_int,
)

log = logging.getLogger(__name__)


def _loopback(default_port: int) -> Any:
    return parse_listen_address(f"127.0.0.1:{default_port}")


def flags() -> FlagSet:
    """Flags of the demo (each mirrored by an OPENCOMPUTE_* env var)."""
    fs = FlagSet()

    def address(name: str, what: str, port: int) -> Flag:
        return Flag(
            f"demo.{name}-listen-address",
            f"Where the demo's {what} listens.",
            default=_loopback(port),
            convert=parse_listen_address,
            metavar="HOST:PORT",
        )

    fs.add(
        Flag("demo.dir", "Directory for state, logs and TSDB (default: a temporary one, removed on exit).",
             default=None, metavar="DIR"),
        Flag("demo.duration", "Stop after this long (default: run until Ctrl-C/SIGTERM).", default=None,
             convert=positive_duration, metavar="DURATION"),
        Flag("demo.prometheus", "Start Prometheus and Alertmanager beside the exporters "
             "(--no-demo.prometheus: only the exporters).", default=True, is_bool=True),
        address("miner", "miner exporter (simulated GPUs)", 9927),
        address("validator", "validator exporter", 9928),
        address("network", "network exporter", 9929),
        address("registrar", "registrar loop (on a SIMULATED chain)", 9930),
        address("prometheus", "Prometheus", 19090),
        address("alertmanager", "Alertmanager", 19093),
        address("webhook", "alert webhook receiver (prints alerts)", 19095),
        Flag("demo.scrape-interval", "Prometheus scrape and rule evaluation interval.", default=5.0,
             convert=positive_duration, metavar="DURATION"),
        Flag("demo.alert-for-cap", "Cap alert rules' `for:` at this (demo copies only; 0 keeps them).",
             default=30.0, convert=parse_duration, metavar="DURATION"),
        Flag("demo.lift-penalty-after", "Lift our miner's penalty after this long, to show the alert "
             "resolving (0: never).", default=180.0, convert=parse_duration, metavar="DURATION"),
        Flag("demo.kill-miner-after", "SIGKILL the demo's miner exporter after this long, as when its host "
             "dies: the penalty keeps paging, OpenComputeExporterDown pages and inhibits the miner's "
             "held GPU alerts (0: never).", default=0.0, convert=parse_duration, metavar="DURATION"),
        Flag("demo.refresh-interval", "Network exporter refresh interval in the demo.", default=5.0,
             convert=positive_duration, metavar="DURATION"),
        Flag("demo.validators", "Simulated validators.", default=5, convert=positive_int),
        Flag("demo.miners", "Simulated miners.", default=40, convert=positive_int),
        Flag("demo.gpus", "Simulated GPUs on the demo's own miner.", default=8, convert=positive_int),
        Flag("demo.seed", "Seed of the simulation (same seed, same subnet).", default=27, convert=int),
        *log_flags(),
    )  # fmt: skip
    return fs


def _install_signals(handler: Callable[..., None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def run(values: dict[str, Any]) -> int:
    """Run the demo until Ctrl-C/SIGTERM or ``--demo.duration``; stop every child on the way out."""
    from exporters.core.runtime import setup_logging
    from exporters.demo.orchestrator import Demo, DemoConfig, run_until_stopped

    setup_logging(values["log_level"], values["log_format"])
    temp: tempfile.TemporaryDirectory[str] | None = None
    if values["demo_dir"]:
        directory = Path(values["demo_dir"]).expanduser().resolve()
    else:
        temp = tempfile.TemporaryDirectory(prefix="opencompute-demo-")
        directory = Path(temp.name)
    interval = float(values["demo_scrape_interval"])
    cap = float(values["demo_alert_for_cap"])
    config = DemoConfig(
        directory=directory,
        miner_address=values["demo_miner_listen_address"],
        validator_address=values["demo_validator_listen_address"],
        network_address=values["demo_network_listen_address"],
        registrar_address=values["demo_registrar_listen_address"],
        prometheus=bool(values["demo_prometheus"]),
        prometheus_address=values["demo_prometheus_listen_address"],
        alertmanager_address=values["demo_alertmanager_listen_address"],
        webhook_address=values["demo_webhook_listen_address"],
        scrape_interval=interval,
        evaluation_interval=interval,
        alert_for_cap=cap if cap > 0 else None,
        network_refresh_interval=float(values["demo_refresh_interval"]),
        lift_penalty_after=float(values["demo_lift_penalty_after"]) or None,
        kill_miner_after=float(values["demo_kill_miner_after"]) or None,
        validators=int(values["demo_validators"]),
        miners=int(values["demo_miners"]),
        gpus=int(values["demo_gpus"]),
        seed=int(values["demo_seed"]),
        log_level=values["log_level"],
    )
    try:
        return run_until_stopped(Demo(config), values["demo_duration"], _install_signals)
    finally:
        if temp is not None:
            temp.cleanup()
