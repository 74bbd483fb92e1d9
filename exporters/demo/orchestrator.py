"""The demo: a simulated subnet, the three exporters as real processes, Prometheus and Alertmanager.

What :class:`Demo` sets up under one directory (``DemoConfig.directory``):

1. ``state.sqlite``: the embedded state store, seeded by
   :func:`exporters.network.simulate.seed_network` with validators and miners that publish
   signed runs (real sr25519 dev keys ``//validator{i}``/``//miner{i}``), some penalized,
   some tampered with after signing, some carrying only the legacy v1 signature.
2. ``compute.db``: one validator's ComputeDb in the original schema
   (:func:`exporters.validator.simulate.create_compute_db`).
3. Three child processes, started the way a real deployment runs them:
   ``opencompute-exporter validator`` and ``network`` (via ``python -m exporters``), and the
   miner exporter with SIMULATED GPUs (``python -m exporters.demo.simgpu_miner``) holding the
   hotkey of one simulated miner, so alerts that join on ``hotkey`` light up. A fourth, the
   registrar loop on a SIMULATED chain (``python -m exporters.demo.simregistrar``), signing as the
   ComputeDb's validator.
4. When the binaries exist: Prometheus scraping them with the generated alert rules, an
   Alertmanager routing every alert to a webhook receiver that the demo runs itself and that
   prints each notification.

Everything binds to loopback. :meth:`Demo.stop` stops every child (process groups, then SIGKILL
after a grace period); children also die with the demo process (see ``processes.py``).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from exporters.demo import promstack
from exporters.demo.processes import ChildFailed, Supervisor

log = logging.getLogger(__name__)

Address = tuple[str, int]

NETUID = 27
PENALIZED = 4  # simulated penalties: enough that one of them is allocated and ours
VALIDATOR_URI = "//validator"  # the ComputeDb's own validator (exporters.validator.simulate)
SIMULATED_MODEL = "NVIDIA H100 80GB HBM3"  # what exporters.demo.simgpu's default board reports
JOBS = {
    "miner": "opencompute-miner",
    "validator": "opencompute-validator",
    "network": "opencompute-network",
    "registrar": "opencompute-registrar",
}
REGISTRAR_IP = "203.0.113.27"  # what the demo's registrar publishes (on its SIMULATED chain)


class DemoError(RuntimeError):
    """The demo could not start; the message says what failed and where its log is."""


def repo_root() -> Path:
    """The checkout (or install prefix) holding ``alerts/`` and ``dashboards/``."""
    return Path(__file__).resolve().parents[2]


def default_rule_files() -> list[Path]:
    """The committed, generated alert and recording rules (next to the ``alerts`` package)."""
    import importlib.util

    spec = importlib.util.find_spec("alerts")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for base in [*map(Path, locations), repo_root() / "alerts"]:
        found = sorted((base / "generated").glob("*.yml"))
        if found:
            return found
    return []


def _hostport(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class DemoConfig:
    """Everything the demo can be told; defaults are what ``opencompute-exporter demo`` uses."""

    directory: Path
    miner_address: Address = ("127.0.0.1", 9927)
    validator_address: Address = ("127.0.0.1", 9928)
    network_address: Address = ("127.0.0.1", 9929)
    registrar_address: Address = ("127.0.0.1", 9930)
    # More network exporter replicas (same store and flags, as the shipped 2-replica Deployment),
    # scraped by the same job: dashboards and alerts must not count them twice.
    network_replica_addresses: Sequence[Address] = ()
    prometheus: bool = True
    require_prometheus: bool = False  # tests: missing binaries are an error, not a degradation
    prometheus_address: Address = ("127.0.0.1", 19090)
    alertmanager_address: Address = ("127.0.0.1", 19093)
    webhook_address: Address = ("127.0.0.1", 19095)
    webhook_url: str | None = None  # deliver alerts there instead of the demo's own receiver
    scrape_interval: float = 5.0
    evaluation_interval: float = 5.0
    alert_for_cap: float | None = 30.0  # cap rules' `for:` in the demo's copies (None = keep)
    rule_files: Sequence[Path] | None = None  # None = alerts/generated/*.yml
    network_refresh_interval: float = 5.0
    lift_penalty_after: float | None = None  # republish the penalizing run without us after this
    kill_miner_after: float | None = None  # SIGKILL our miner exporter after this (host down)
    validators: int = 5
    miners: int = 40
    gpus: int = 8
    seed: int = 27
    first_xid_after: float = 3.0
    log_level: str = "info"
    echo: IO[str] | None = field(default_factory=lambda: sys.stderr, repr=False)  # children's logs
    out: IO[str] = field(default_factory=lambda: sys.stdout, repr=False)  # alerts printed, URLs


@dataclass
class SubnetInfo:
    """The simulated subnet as seeded: who we are, who penalizes us, what to allowlist."""

    state_path: Path
    compute_db_path: Path
    our_miner_uri: str
    our_miner_hotkey: str
    penalizing_validator_uri: str
    our_allocator: str  # the trusted validator our miner should report as holding its allocation
    validator_hotkeys: list[str]
    network: Any = field(repr=False, default=None)  # exporters.network.simulate.SimulatedNetwork


class Demo:
    """Starts and stops the whole demo; usable as a context manager (tests) or from ``run``."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self.dir = config.directory
        self.supervisor = Supervisor(self.dir / "logs", echo=config.echo)
        self.receiver: promstack.WebhookReceiver | None = None
        self.subnet: SubnetInfo | None = None
        self.prometheus_url: str | None = None
        self.alertmanager_url: str | None = None
        self.urls: dict[str, str] = {}
        self.notes: list[str] = []
        self.killed: set[str] = set()  # children stopped on purpose by a scenario
        self._print_lock = threading.Lock()

    def __enter__(self) -> Demo:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Seed, start the exporters and (when available) Prometheus + Alertmanager; wait until ready."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.subnet = self._seed()
        self._start_exporters()
        self._start_monitoring()

    def _seed(self) -> SubnetInfo:
        from datetime import UTC, datetime

        from exporters.core.state.sqlite_store import SQLiteStateStore
        from exporters.network.simulate import seed_network
        from exporters.validator.simulate import create_compute_db

        cfg = self.config
        state_path = self.dir / "state.sqlite"
        net, ours = self._seed_store(state_path, seed_network, SQLiteStateStore, None)
        hardware = (SIMULATED_MODEL, cfg.gpus)
        index = int(ours.uri.removeprefix("//miner"))
        if net.pog.get(len(net.validator_keys) + index) != hardware:
            # Our miner exporter publishes its SIMULATED GPUs: make the validators' proof-of-GPU
            # agree, so it does not raise OpenComputeMinerClaimMismatch (same seed otherwise).
            net, ours = self._seed_store(state_path, seed_network, SQLiteStateStore, {index: hardware})
        # Legacy proof-of-work rows too, so the challenge panels have something to show.
        db = create_compute_db(
            self.dir / "compute.db", seed=cfg.seed, now=datetime.now(UTC), challenge_rows=2000
        )
        log.info(
            "seeded %d validators and %d miners into %s; ComputeDb of validator %s at %s",
            len(net.validator_keys),
            len(net.miner_keys),
            state_path,
            db.validator_hotkey,
            db.path,
        )
        return SubnetInfo(
            state_path=state_path,
            compute_db_path=Path(db.path),
            our_miner_uri=ours.uri,
            our_miner_hotkey=_ss58(ours.uri),
            penalizing_validator_uri=ours.penalized_by,
            our_allocator=ours.allocated_by or net.validator_hotkeys[0],
            validator_hotkeys=list(net.validator_hotkeys),
            network=net,
        )

    def _seed_store(
        self, state_path: Path, seed_network: Any, store_class: Any, pog: dict[int, tuple[str, int]] | None
    ) -> tuple[Any, OurMiner]:
        cfg = self.config
        for suffix in ("", "-wal", "-shm"):
            Path(f"{state_path}{suffix}").unlink(missing_ok=True)
        store = store_class(str(state_path))
        try:
            net = seed_network(
                store,
                validators=cfg.validators,
                miners=cfg.miners,
                seed=cfg.seed,
                penalized=PENALIZED,
                pog_overrides=pog,
            )
            return net, choose_our_miner(net, store.read_runs("validator", NETUID))
        finally:
            store.close()

    def _exporter_env(self) -> dict[str, str]:
        """The demo's environment minus OPENCOMPUTE_* settings meant for a real deployment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCOMPUTE_")}
        env["OPENCOMPUTE_SIMGPU_COUNT"] = str(self.config.gpus)
        env["OPENCOMPUTE_SIMGPU_SEED"] = str(self.config.seed)
        env["OPENCOMPUTE_SIMGPU_FIRST_XID"] = f"{self.config.first_xid_after}s"
        return env

    def _start_exporters(self) -> None:
        assert self.subnet is not None
        cfg, env = self.config, self._exporter_env()
        specs = {
            "network": (
                [sys.executable, "-m", "exporters.demo.simchain", *self.network_args()],
                cfg.network_address,
            ),
            "validator": (
                [sys.executable, "-m", "exporters", "validator", *self.validator_args()],
                cfg.validator_address,
            ),
            "miner": (
                [sys.executable, "-m", "exporters.demo.simgpu_miner", *self.miner_args()],
                cfg.miner_address,
            ),
            "registrar": (
                [sys.executable, "-m", "exporters.demo.simregistrar", *self.registrar_args()],
                cfg.registrar_address,
            ),
        }
        children = {}
        # The miner's port check aims at the network exporter: start the miner once that listens.
        for name in ("network", "validator", "miner", "registrar"):
            argv, _ = specs[name]
            if name == "miner":
                self._wait_exporter(children["network"], specs["network"][1])
            children[name] = self.supervisor.start(name, argv, env=env, cwd=self.dir, echo=True)
        for index, address in enumerate(cfg.network_replica_addresses, start=2):
            argv = [sys.executable, "-m", "exporters", "network", *self.network_args(address)]
            children[f"network-{index}"] = self.supervisor.start(
                f"network-{index}", argv, env=env, cwd=self.dir, echo=True
            )
            specs[f"network-{index}"] = (argv, address)
        for name in (n for n in children if n != "registrar"):
            self.urls[f"{name} exporter"] = self._wait_exporter(children[name], specs[name][1])
        self.urls["registrar (simulated chain)"] = self._wait_exporter(
            children["registrar"], cfg.registrar_address
        )

    def _wait_exporter(self, child: Any, address: Address) -> str:
        url = f"http://{_hostport(address)}/metrics"
        try:
            self.supervisor.wait_ready(child, url, timeout=30.0)
        except ChildFailed as exc:
            raise DemoError(str(exc)) from None
        return url

    def common_args(self, address: Address) -> list[str]:
        return [f"--web.listen-address={_hostport(address)}", f"--log.level={self.config.log_level}"]

    def miner_args(self) -> list[str]:
        """Flags of the miner exporter: one simulated miner's identity, the trust files, port check.

        The miner finds its allocation the way it does in production: in the trusted validators'
        signed runs of the shared store, trusted per the simulation's metagraph (see
        :meth:`trust_args`), refreshed at the demo's cadence.
        """
        assert self.subnet is not None
        host, port = self.config.network_address  # an open port to check: the network exporter's
        return [
            *self.common_args(self.config.miner_address),
            f"--miner.external-ip={host}",
            f"--miner.port={port}",
            "--miner.port-check-interval=5s",
            "--host.disk-path=/",
            "--miner.publish-interval=1m",
            f"--miner.allocation-refresh-interval={self.config.network_refresh_interval:g}s",
            *self.trust_args("miner"),
            *identity_args(
                self.subnet.our_miner_uri, self.subnet.state_path, self.dir / "miner-outbox.sqlite"
            ),
        ]

    def validator_args(self) -> list[str]:
        """Flags of the validator exporter: the simulated ComputeDb and its validator's own hotkey.

        That hotkey (``//validator``) publishes into the shared store but is not in the simulated
        metagraph, so the network view rejects its run as ``untrusted_validator``.
        """
        assert self.subnet is not None
        return [
            *self.common_args(self.config.validator_address),
            f"--validator.db-path={self.subnet.compute_db_path}",
            "--validator.local-timezone=UTC",
            "--validator.publish-interval=30s",
            *identity_args(VALIDATOR_URI, self.subnet.state_path, self.dir / "validator-outbox.sqlite"),
        ]

    def registrar_args(self) -> list[str]:
        """Flags of the registrar loop on its SIMULATED chain (``exporters.demo.simregistrar``).

        It signs as the ComputeDb's validator and keeps the version the simulated neuron served.
        """
        interval = f"{self.config.network_refresh_interval:g}s"
        return [
            *self.common_args(self.config.registrar_address),
            "--hotkey.uri",
            VALIDATOR_URI,
            f"--registrar.ip={REGISTRAR_IP}",
            f"--registrar.interval={interval}",
            f"--netuid={NETUID}",
        ]

    def trust_args(self, prefix: str) -> list[str]:
        """Validator-trust flags (``--subtensor.*``, ``--<prefix>.*``) of the network and miner exporters.

        There is no chain here (``--subtensor.network=none``), so both fall back to the last good
        metagraph on disk, which the demo writes from the simulation: stakes and registrations
        are known (a low-stake validator is not trusted, every miner has a uid). The static
        allowlist is the next fallback, used only if that file is unreadable.
        """
        from exporters.subnet.trust import MetagraphCache

        assert self.subnet is not None
        state_dir = self.dir / "network-state"
        if self.subnet.network is not None:
            MetagraphCache(state_dir).save(self.subnet.network.chain)
        allowlist = self.dir / "validator-allowlist.txt"
        allowlist.write_text("".join(f"{hk}\n" for hk in self.subnet.validator_hotkeys))
        return [
            "--subtensor.network=none",
            f"--{prefix}.state-dir={state_dir}",
            f"--{prefix}.validator-allowlist={allowlist}",
        ]

    def network_args(self, address: Address | None = None) -> list[str]:
        """Flags of the network exporter: the seeded store and the simulation's metagraph."""
        assert self.subnet is not None
        refresh = f"{self.config.network_refresh_interval:g}s"
        return [
            *self.common_args(address or self.config.network_address),
            "--state.backend=sqlite",
            f"--state.sqlite-path={self.subnet.state_path}",
            f"--netuid={NETUID}",
            *self.trust_args("network"),
            # The validator whose checklist penalizes our miner stands in for NI's hardcoded hotkey,
            # so its penalty is enforced and pages, as NI's would on the live network.
            f"--network.penalty-authority={_ss58(self.subnet.penalizing_validator_uri)}",
            f"--network.validator-refresh-interval={refresh}",
            f"--network.miner-refresh-interval={refresh}",
            # The simulated chain (exporters.demo.simchain) moves emissions every epoch (60 blocks).
            f"--network.chain-refresh-interval={refresh}",
            *self.ours_args(),
        ]

    def ours_args(self) -> list[str]:
        """The operator's own hotkeys, declared to the network exporter, so the penalty of our
        miner keeps paging when its exporter is down (--demo.kill-miner-after shows it): our miner,
        our validator exporter's hotkey, and for the chain view the best-staked permitted validator
        plus every hotkey of our miner's simulated coldkey (read from the simulated chain)."""
        from exporters.demo.simchain import coldkey_of

        assert self.subnet is not None
        ours = [self.subnet.our_miner_hotkey, _ss58(VALIDATOR_URI)]
        if self.subnet.network is None:
            return [f"--network.our-hotkeys={','.join(ours)}"]
        neurons = self.subnet.network.chain.neurons
        permitted = sorted((n.stake, hk) for hk, n in neurons.items() if n.permit)
        ours += [permitted[-1][1]] if permitted else []
        coldkey = coldkey_of(neurons[self.subnet.our_miner_hotkey].uid)
        return [f"--network.our-hotkeys={','.join(ours)}", f"--network.our-coldkeys={coldkey}"]

    # ------------------------------------------------------------------ Prometheus + Alertmanager

    def _start_monitoring(self) -> None:
        cfg = self.config
        if not cfg.prometheus:
            self.notes.append("Prometheus and Alertmanager not started (--no-demo.prometheus).")
            return
        prom = promstack.find_binary(promstack.PROMETHEUS_NAMES)
        am = promstack.find_binary(promstack.ALERTMANAGER_NAMES)
        if prom is None or am is None:
            missing = [n for n, b in (("prometheus", prom), ("prometheus-alertmanager", am)) if b is None]
            message = (
                f"{' and '.join(missing)} not found: running the exporters only. Install with "
                "`apt-get install prometheus prometheus-alertmanager` (or `bash scripts/dev.sh demo`)."
            )
            if cfg.require_prometheus:
                raise DemoError(message)
            log.warning("%s", message)
            self.notes.append(message)
            return
        webhook = cfg.webhook_url or self._start_receiver()
        am_addr, prom_addr = _hostport(cfg.alertmanager_address), _hostport(cfg.prometheus_address)
        am_cfg = promstack.write_yaml(
            self.dir / "alertmanager" / "alertmanager.yml", self._alertmanager_config(webhook)
        )
        am_child = self.supervisor.start(
            "alertmanager",
            promstack.alertmanager_argv(am, am_cfg, self.dir / "alertmanager" / "data", am_addr),
        )
        rules = self._write_rules()
        targets = {
            JOBS["miner"]: _hostport(cfg.miner_address),
            JOBS["validator"]: _hostport(cfg.validator_address),
            JOBS["network"]: [_hostport(a) for a in (cfg.network_address, *cfg.network_replica_addresses)],
            JOBS["registrar"]: _hostport(cfg.registrar_address),
        }
        prom_cfg = promstack.write_yaml(
            self.dir / "prometheus" / "prometheus.yml",
            promstack.prometheus_config(
                targets,
                rule_files=rules,
                alertmanager=am_addr,
                scrape_interval=cfg.scrape_interval,
                evaluation_interval=cfg.evaluation_interval,
            ),
        )
        prom_child = self.supervisor.start(
            "prometheus",
            promstack.prometheus_argv(prom, prom_cfg, self.dir / "prometheus" / "data", prom_addr),
        )
        try:
            self.supervisor.wait_ready(am_child, f"http://{am_addr}/-/ready", timeout=20.0)
            self.supervisor.wait_ready(prom_child, f"http://{prom_addr}/-/ready", timeout=20.0)
        except ChildFailed as exc:
            raise DemoError(str(exc)) from None
        self.prometheus_url, self.alertmanager_url = f"http://{prom_addr}", f"http://{am_addr}"
        # Debian's Prometheus serves only its classic UI (under /classic/); Debian's
        # Alertmanager ships no web UI at all: its HTTP API and amtool work.
        self.urls["Prometheus (classic UI)"] = f"{self.prometheus_url}/classic/graph"
        self.urls["Prometheus alerts"] = f"{self.prometheus_url}/classic/alerts"
        self.urls["Alertmanager API (no UI)"] = f"{self.alertmanager_url}/api/v2/alerts"
        self.notes.append(
            f"amtool --alertmanager.url={self.alertmanager_url} alert query --inhibited: the "
            "alerts Alertmanager holds, inhibited ones included (routing and inhibition are "
            "deploy/alertmanager/alertmanager.yml's)"
        )
        if self.receiver is not None:
            self.urls["alert webhook (prints here)"] = self.receiver.url

    def _alertmanager_config(self, webhook: str) -> dict[str, Any]:
        """The shipped routing tree and inhibit rules, timings compressed like the rules' ``for:``."""
        cfg = self.config
        timings = {"group_wait": 1.0, "group_interval": max(1.0, cfg.evaluation_interval)}
        shipped = repo_root() / "deploy" / "alertmanager" / "alertmanager.yml"
        if shipped.is_file():
            return promstack.shipped_alertmanager_config(shipped, webhook, **timings)
        self.notes.append(f"{shipped} not found: Alertmanager routes every alert to the webhook")
        return promstack.alertmanager_config(webhook, **timings)

    def kill_miner(self) -> None:
        """SIGKILL the miner exporter, as when its host dies: the scenario behind the "hold"."""
        child = next(c for c in self.supervisor.children if c.name == "miner")
        self.killed.add(child.name)
        os.killpg(child.pid, signal.SIGKILL)
        child.proc.wait(timeout=10)

    def _start_receiver(self) -> str:
        host, port = self.config.webhook_address
        self.receiver = promstack.WebhookReceiver(
            host, port, on_notification=self._print_notification
        ).start()
        return self.receiver.url

    def _print_notification(self, note: promstack.Notification) -> None:
        with self._print_lock:
            for name, status, labels in note.alert_states():
                alert = next((a for a in note.alerts if a.get("labels") == labels), {})
                summary = alert.get("annotations", {}).get("summary", "")
                keys = ("severity", "hotkey", "instance", "gpu", "xid", "uid", "reason", "role")
                shown = " ".join(f"{k}={labels[k]}" for k in keys if labels.get(k))
                print(
                    f"ALERT {status.upper():8} {name} {shown} :: {summary}", file=self.config.out, flush=True
                )

    def _write_rules(self) -> list[Path]:
        """Copies of the rule files with `for:` capped (demo only), so alerts show up in minutes."""
        sources = list(self.config.rule_files) if self.config.rule_files is not None else default_rule_files()
        if not sources:
            message = "no alert rules found in alerts/generated/: Prometheus runs without alerts"
            log.warning("%s", message)
            self.notes.append(message)
        out_dir = self.dir / "prometheus" / "rules"
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for src in sources:
            data = yaml.safe_load(src.read_text()) or {}
            capped = cap_rule_durations(data, self.config.alert_for_cap, self.config.evaluation_interval)
            written.append(promstack.write_yaml(out_dir / src.name, capped))
        return written

    # ------------------------------------------------------------------ running, stopping

    def banner(self) -> str:
        """The lines printed once everything is up."""
        assert self.subnet is not None
        width = max(len(k) for k in self.urls) if self.urls else 0
        lines = ["", "opencompute demo is running (simulated subnet; GPUs are SIMULATED):"]
        lines += [f"  {name.ljust(width)}  {url}" for name, url in self.urls.items()]
        ours = (
            f"{self.subnet.our_miner_hotkey} ({self.subnet.our_miner_uri}, penalized by one validator; "
            f"its proof-of-GPU matches its {self.config.gpus} SIMULATED GPUs)"
        )
        lines += [
            f"  {'our miner'.ljust(width)}  {ours}",
            f"  {'demo directory'.ljust(width)}  {self.dir} (logs in {self.dir / 'logs'})",
        ]
        lines += [f"  note: {n}" for n in self.notes]
        if not self.config.kill_miner_after:
            lines.append(
                "  note: --demo.kill-miner-after=1m kills the miner exporter to show a page that "
                "keeps firing and an inhibited alert"
            )
        lines += [f"Try: curl -s localhost:{self.config.network_address[1]}/metrics | grep penalized", ""]
        return "\n".join(lines)

    def check_children(self) -> str | None:
        """A message naming the first child that died on its own, else None."""
        for child in self.supervisor.exited():
            if child.name in self.killed:
                continue
            return (
                f"{child.name} exited unexpectedly with code {child.proc.returncode}; "
                f"last lines of {child.log_path}:\n{child.log_tail()}"
            )
        return None

    def wait(self, stop: threading.Event, duration: float | None = None) -> int:
        """Block until ``stop`` is set, ``duration`` passes, or a child dies (exit code 1).

        With ``lift_penalty_after`` the penalizing validator republishes its run without our
        miner at that time, so the demo shows an alert resolving as well as firing.
        """
        started = time.monotonic()
        deadline = None if not duration else started + duration
        lift_at = None if not self.config.lift_penalty_after else started + self.config.lift_penalty_after
        kill_at = None if not self.config.kill_miner_after else started + self.config.kill_miner_after
        while not stop.wait(0.5):
            problem = self.check_children()
            if problem:
                log.error("%s", problem)
                return 1
            now = time.monotonic()
            if lift_at is not None and now >= lift_at:
                lift_at = None
                self._lift_and_tell()
            if kill_at is not None and now >= kill_at:
                kill_at = None
                self.kill_miner()
                with self._print_lock:
                    print(
                        "DEMO: killed the miner exporter (SIGKILL), as when its host dies: "
                        "OpenComputeMinerPenalized keeps paging (ours is declared to the network "
                        "exporter), OpenComputeExporterDown pages, and the miner's GPU alerts stay "
                        "firing but inhibited (amtool ... alert query --inhibited), no RESOLVED",
                        file=self.config.out,
                        flush=True,
                    )
            if deadline is not None and now >= deadline:
                log.info("--demo.duration reached")
                return 0
        return 0

    def _lift_and_tell(self) -> None:
        assert self.subnet is not None
        try:
            seq = self.lift_penalty()
        except DemoError as exc:
            log.error("could not lift the penalty: %s", exc)
            return
        with self._print_lock:
            print(
                f"DEMO: {self.subnet.penalizing_validator_uri} republished its run (seq {seq}) without "
                f"{self.subnet.our_miner_hotkey}: the penalty alert should resolve shortly",
                file=self.config.out,
                flush=True,
            )

    def stop(self) -> None:
        """Stop every child and the receiver; safe to call twice."""
        self.supervisor.stop_all()
        if self.receiver is not None:
            with suppress(OSError):
                self.receiver.shutdown()
            self.receiver = None

    # ------------------------------------------------------------------ scenario hooks

    def lift_penalty(self) -> int:
        """Republish the penalizing validator's run without our miner; return the new seq."""
        assert self.subnet is not None
        return republish_without_penalty(
            self.subnet.state_path,
            self.subnet.penalizing_validator_uri,
            self.subnet.our_miner_hotkey,
            self.dir / "penalizer-outbox.sqlite",
        )


def _ss58(uri: str) -> str:
    from bittensor_core import Keypair

    return str(Keypair.create_from_uri(uri).ss58_address)


def identity_args(uri: str, state_path: Path, outbox: Path, publish_interval: float = 5.0) -> list[str]:
    """Identity and publishing flags of a miner/validator exporter in the demo (dev key URI)."""
    return [
        f"--hotkey.uri={uri}",
        f"--netuid={NETUID}",
        "--state.backend=sqlite",
        f"--state.sqlite-path={state_path}",
        f"--publish.outbox-path={outbox}",
        f"--publish.interval={publish_interval:g}s",
    ]


@dataclass(frozen=True)
class OurMiner:
    """The simulated miner the demo's miner exporter pretends to be."""

    uri: str  # //miner{i}
    penalized_by: str  # URI of the one validator whose list penalizes it
    allocated_by: str | None  # the allocating validator the miner reports (highest stake), if any


def choose_our_miner(net: Any, runs: Sequence[Any]) -> OurMiner:
    """The demo's own miner: penalized by exactly one trusted validator, so one republish lifts it.

    That validator must list it in ``penalized_hotkeys_checklist``: the demo makes it the penalty
    authority (``--network.penalty-authority``), so the penalty is enforced. Prefers a miner that
    is also allocated, so the allocation panels have a story too. ``runs`` are the validator runs
    as stored (read back after seeding, so this follows whatever the simulation published).
    """
    from exporters.core.signing import ENVELOPE_KEY
    from exporters.miner.allocation import choose_validator

    uri_of = {key.ss58_address: f"//validator{i}" for i, key in enumerate(net.validator_keys)}
    stakes = {hotkey: neuron.stake for hotkey, neuron in net.chain.neurons.items()}
    penalizers: dict[str, set[str]] = {}
    checklisted: dict[str, set[str]] = {}
    allocators: dict[str, set[str]] = {}
    for run in runs:
        validator = run.config.get("hotkey")
        if validator not in uri_of:
            continue
        envelope = run.config.get(ENVELOPE_KEY)
        payload = (envelope.get("payload") if isinstance(envelope, dict) else run.config) or {}
        for key in ("penalized_hotkeys_checklist", "penalized_hotkeys"):
            for entry in payload.get(key) or []:
                penalizers.setdefault(_penalty_hotkey(entry), set()).add(validator)
                if key == "penalized_hotkeys_checklist":
                    checklisted.setdefault(_penalty_hotkey(entry), set()).add(validator)
        for hotkey in payload.get("allocated_hotkeys") or []:
            allocators.setdefault(hotkey, set()).add(validator)
    candidates = [
        OurMiner(
            f"//miner{i}",
            uri_of[next(iter(found))],
            choose_validator(allocators.get(key.ss58_address, set()), stakes),
        )
        for i, key in enumerate(net.miner_keys)
        if len(found := penalizers.get(key.ss58_address, set())) == 1
        and found <= checklisted.get(key.ss58_address, set())
    ]
    if not candidates:
        raise DemoError(
            "the simulated network has no miner on exactly one validator's penalty lists, in its checklist"
        )
    return next((c for c in candidates if c.allocated_by), candidates[0])


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str) -> float | None:
    total, rest = 0.0, str(text).strip()
    while rest:
        m = _DURATION_PART.match(rest)
        if not m:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        rest = rest[m.end() :]
    return total


def cap_rule_durations(data: dict[str, Any], cap: float | None, interval: float | None) -> dict[str, Any]:
    """Cap every rule's ``for:`` at ``cap`` seconds and every group's ``interval`` at ``interval``.

    Only the demo's copies change (so an alert shows up within a minute of its cause); the
    committed rules and their promtool tests keep the production values.
    """
    groups = data.get("groups") or []
    for group in groups:
        if interval is not None and "interval" in group:
            current = _seconds(group["interval"])
            if current is not None and current > interval:
                group["interval"] = promstack._duration(interval)
        for rule in group.get("rules") or []:
            if cap is None or "for" not in rule:
                continue
            current = _seconds(rule["for"])
            if current is not None and current > cap:
                old, rule["for"] = rule["for"], promstack._duration(cap)
                _retell_for(rule, old, rule["for"])
    return data


def _retell_for(rule: dict[str, Any], old: str, new: str) -> None:
    """Make the annotations say the ``for:`` the demo's copy has ("for 5m" -> "for 30s")."""
    pattern = re.compile(rf"\bfor {re.escape(old)}\b")
    for key, text in (rule.get("annotations") or {}).items():
        if isinstance(text, str):
            rule["annotations"][key] = pattern.sub(f"for {new}", text)


def republish_without_penalty(state_path: Path, validator_uri: str, miner_hotkey: str, outbox: Path) -> int:
    """Re-sign and republish a validator's run with ``miner_hotkey`` removed from its penalty lists.

    Goes through the real :class:`~exporters.core.publish.Publisher` (v2 envelope with a higher
    seq, v1 signature), exactly what an operator lifting a penalty would cause.
    """
    from bittensor_core import Keypair

    from exporters.core.publish import Publisher
    from exporters.core.signing import ENVELOPE_KEY
    from exporters.core.state.outbox import Outbox
    from exporters.core.state.sqlite_store import SQLiteStateStore

    keypair = Keypair.create_from_uri(validator_uri)
    store = SQLiteStateStore(str(state_path))
    try:
        run = next(
            (
                r
                for r in store.read_runs("validator", NETUID)
                if r.config.get("hotkey") == keypair.ss58_address
            ),
            None,
        )
        if run is None:
            raise DemoError(f"no validator run for {validator_uri} in {state_path}")
        envelope = run.config.get(ENVELOPE_KEY) or {}
        payload = dict(envelope.get("payload") or {})
        for key in ("penalized_hotkeys_checklist", "penalized_hotkeys"):
            if key in payload:
                payload[key] = [e for e in payload[key] if _penalty_hotkey(e) != miner_hotkey]
        last_seq = int(envelope.get("seq") or 0)
        bump = Outbox(str(outbox))
        try:
            while bump.seq() < last_seq:  # the publish reserves last_seq + 1: never looks like a replay
                bump.next_seq()
        finally:
            bump.close()
        publisher = Publisher(
            store,
            keypair,
            role="validator",
            netuid=NETUID,
            outbox_path=str(outbox),
            mode="full",
            into_neuron_run=True,  # a simulated neuron: the demo's own simulated run, nobody else's
        )
        try:
            publisher.submit(payload)
            if publisher.flush() < 1:
                raise DemoError("republishing the validator run failed; see the log")
            return publisher.sequence
        finally:
            publisher.close()
    finally:
        store.close()


def _penalty_hotkey(entry: Any) -> Any:
    return entry.get("hotkey") if isinstance(entry, dict) else entry


def run_until_stopped(
    demo: Demo, duration: float | None, install_signals: Callable[[Callable[..., None]], None]
) -> int:
    """Start ``demo``, print the banner, wait for a signal/duration/dead child, stop everything.

    ``install_signals`` registers the handler for SIGINT/SIGTERM. A signal while the demo is
    still starting aborts the start (KeyboardInterrupt, exit 130); later it ends the wait.
    """
    stop = threading.Event()
    starting = True

    def on_signal(*_: object) -> None:
        stop.set()
        if starting:
            raise KeyboardInterrupt

    install_signals(on_signal)
    try:
        demo.start()
        starting = False
        print(demo.banner(), file=demo.config.out, flush=True)
        return demo.wait(stop, duration)
    except DemoError as exc:
        log.error("demo failed to start: %s", exc)
        return 1
    finally:
        starting = False
        demo.stop()
