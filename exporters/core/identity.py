"""Who this exporter publishes as, and where run state lives: flags, builders, metrics.

The miner and validator exporters sign and publish their run state with the participant's
hotkey; the network exporter only reads. Both pick a state store (``sqlite`` for a single host
or the demo, ``wandb`` for the live network's ``neuralinternet/opencompute``). Without a
wallet or key URI the exporter still serves metrics; it just does not publish, says so once
in the log, and exports ``opencompute_publish_enabled 0``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.config import (
    ConfigError,
    Flag,
    choice,
    parse_netuid,
    positive_duration,
    writable_file,
)
from exporters.core.keys import DEFAULT_WALLET_PATH, keypair_from_uri, load_hotkey
from exporters.core.state.base import StateStore

if TYPE_CHECKING:  # pragma: no cover
    from bittensor_core import Keypair

    from exporters.core.publish import Publisher

log = logging.getLogger(__name__)

DEFAULT_STATE_DIR = "~/.opencompute"
DEFAULT_NETUID = 27
BACKENDS = ("sqlite", "wandb")


@dataclass(frozen=True)
class Identity:
    """The signing hotkey of this miner/validator; the secret never leaves the keypair."""

    keypair: Keypair
    netuid: int
    role: str | None = None
    source: str = "wallet"  # wallet | uri

    @property
    def hotkey(self) -> str:
        return self.keypair.ss58_address


def store_flags() -> list[Flag]:
    """``--netuid``, ``--state.*`` and ``--wandb.*``: what every exporter needs to read runs."""
    return [
        Flag(
            "netuid",
            "Subnet netuid whose runs are published and read.",
            default=DEFAULT_NETUID,
            convert=parse_netuid,
        ),
        Flag(
            "state.backend",
            "Where signed run state lives: sqlite (one host, demo) or wandb (the live network).",
            default="sqlite",
            convert=choice(BACKENDS),
        ),
        Flag(
            "state.sqlite-path",
            "SQLite file of the sqlite backend; the wandb backend keeps its hotkey->run id table there.",
            default=f"{DEFAULT_STATE_DIR}/state.db",
            convert=writable_file,
            metavar="FILE",
        ),
        Flag("wandb.entity", "WandB entity of the shared project.", default="neuralinternet"),
        Flag("wandb.project", "WandB project of the shared runs.", default="opencompute"),
        Flag(
            "wandb.base-url",
            "WandB API base URL (default: wandb's own); the API key comes from WANDB_API_KEY or ~/.netrc.",
            default=None,
            metavar="URL",
        ),
    ]


def identity_flags(role: str) -> list[Flag]:
    """Wallet, store and publish flags for an exporter that publishes as ``role``."""
    return [
        Flag("wallet.name", f"Bittensor wallet name of this {role} (unset: do not publish).", default=None),
        Flag("wallet.hotkey", "Hotkey name inside the wallet.", default="default"),
        Flag(
            "wallet.path", "Directory holding bittensor wallets.", default=DEFAULT_WALLET_PATH, metavar="DIR"
        ),
        Flag(
            "hotkey.uri",
            "Development only: sign with a key URI such as //Alice instead of a wallet.",
            default=None,
            metavar="URI",
        ),
        *store_flags(),
        Flag(
            "publish.mode",
            "envelope: publish the signed v2 envelope into our own run opencompute-exporter-{role}-{hotkey} "
            "(never the neuron's); full: write the original's top-level keys into the neuron's "
            "{role}-{hotkey} run, only with --publish.into-neuron-run.",
            default="envelope",
            convert=choice(("envelope", "full")),
        ),
        Flag(
            "publish.into-neuron-run",
            "DANGEROUS, simulations and test networks only (needs --publish.mode=full): write into the "
            "SN27 neuron's own {role}-{hotkey} run. A neuron writing that run sends its whole config on "
            "each update, erasing ours, and our write can roll back its stats/allocated_hotkeys/specs "
            "that every validator reads.",
            default=False,
            is_bool=True,
        ),
        Flag(
            "publish.interval",
            "How often pending run-state updates are published.",
            default=60.0,
            convert=positive_duration,
        ),
        Flag(
            "publish.outbox-path",
            "SQLite file holding unpublished updates and the persisted sequence number.",
            default=f"{DEFAULT_STATE_DIR}/outbox-{role}.db",
            convert=writable_file,
            metavar="FILE",
        ),
    ]


def entity_project(values: dict[str, Any]) -> str:
    """``entity/project`` from the flags (what v2 signatures bind)."""
    return f"{values.get('wandb_entity') or 'neuralinternet'}/{values.get('wandb_project') or 'opencompute'}"


def build_store(values: dict[str, Any]) -> StateStore:
    """The configured state store; raises ConfigError (e.g. WandB without an API key)."""
    backend = values.get("state_backend") or "sqlite"
    sqlite_path = os.path.expanduser(values.get("state_sqlite_path") or f"{DEFAULT_STATE_DIR}/state.db")
    if backend == "sqlite":
        from exporters.core.state.sqlite_store import SQLiteStateStore

        return SQLiteStateStore(sqlite_path, entity_project=entity_project(values))
    if backend == "wandb":
        from exporters.core.state.wandb_store import WandbStateStore

        return WandbStateStore(
            entity=values.get("wandb_entity") or "neuralinternet",
            project=values.get("wandb_project") or "opencompute",
            base_url=values.get("wandb_base_url"),
            db_path=sqlite_path,
            run_dir=os.path.join(os.path.dirname(sqlite_path) or ".", "wandb"),
        )
    raise ConfigError([f"--state.backend: unknown backend {backend!r}"])


def build_identity(values: dict[str, Any], role: str | None = None) -> Identity | None:
    """The signing identity from ``--wallet.*`` or ``--hotkey.uri``; None means "do not publish"."""
    name, uri = values.get("wallet_name"), values.get("hotkey_uri")
    netuid = int(values.get("netuid", DEFAULT_NETUID))
    if name and uri:
        raise ConfigError(["--wallet.name and --hotkey.uri are mutually exclusive; choose one"])
    if uri:
        log.warning("signing with development key URI (hotkey.uri); never use this on mainnet")
        return Identity(keypair_from_uri(uri), netuid, role, source="uri")
    if not name:
        log.info("publishing disabled: no --wallet.name or --hotkey.uri configured")
        return None
    keypair = load_hotkey(
        name, values.get("wallet_hotkey") or "default", values.get("wallet_path") or DEFAULT_WALLET_PATH
    )
    log.info("publishing as hotkey=%s role=%s netuid=%d", keypair.ss58_address, role or "", netuid)
    return Identity(keypair, netuid, role, source="wallet")


def build_publisher(
    values: dict[str, Any], identity: Identity | None, store: StateStore, role: str
) -> Publisher | None:
    """The publisher for ``identity`` (None when publishing is disabled)."""
    if identity is None:
        return None
    from exporters.core.publish import Publisher

    path = values.get("publish_outbox_path") or f"{DEFAULT_STATE_DIR}/outbox-{role}.db"
    mode = values.get("publish_mode") or "envelope"
    into_neuron_run = bool(values.get("publish_into_neuron_run"))
    if (mode == "full") != into_neuron_run:
        raise ConfigError(
            [
                "--publish.mode=full and --publish.into-neuron-run go together: they write into the "
                "SN27 neuron's own run, which is only safe where no neuron writes it (simulations, "
                "test networks); the default envelope mode publishes into a run of our own"
            ]
        )
    warn_if_local_only(identity, store)
    return Publisher(
        store,
        identity.keypair,
        role=role,
        netuid=identity.netuid,
        outbox_path=os.path.expanduser(path),
        mode=mode,
        into_neuron_run=into_neuron_run,
    )


def local_only(identity: Identity | None, store: StateStore | None) -> bool:
    """A real wallet hotkey publishing into the sqlite backend: nothing reaches the network."""
    return identity is not None and identity.source == "wallet" and getattr(store, "backend", "") == "sqlite"


def warn_if_local_only(identity: Identity | None, store: StateStore | None) -> None:
    """Say once, at start, that a wallet's signed state stays in a local file."""
    if local_only(identity, store):
        log.warning(
            "hotkey=%s publishes into the local SQLite file %s (--state.backend=sqlite): nothing reaches "
            "the network and no validator or network exporter sees it; for the live network set "
            "--state.backend=wandb (OPENCOMPUTE_STATE_BACKEND=wandb) and WANDB_API_KEY",
            identity.hotkey if identity else "",
            getattr(store, "path", ""),
        )


class IdentityCollector(SubCollector):
    """Who we are and which store we use. E.g.::

    opencompute_identity_info{hotkey="5F...",netuid="27",role="miner"} 1.0
    opencompute_publish_enabled 1.0
    opencompute_state_store_info{backend="wandb",project="neuralinternet/opencompute"} 1.0
    opencompute_state_store_requests_total{backend="wandb",operation="read"} 4.0
    """

    name = "identity"

    def __init__(self, identity: Identity | None, store: StateStore | None, role: str | None = None) -> None:
        self._identity = identity
        self._store = store
        self._role = role if role is not None else (identity.role if identity else None)

    def collect(self) -> Iterator[Metric]:
        ident = self._identity
        if ident is not None:
            info = GaugeMetricFamily(
                "opencompute_identity_info",
                "The hotkey this exporter publishes as, with its role and netuid.",
                labels=["role", "hotkey", "netuid"],
            )
            info.add_metric([self._role or "", ident.hotkey, str(ident.netuid)], 1.0)
            yield info
        yield GaugeMetricFamily(
            "opencompute_publish_enabled",
            "Whether this exporter publishes signed run state (0: no wallet or key URI configured).",
            value=1.0 if ident is not None else 0.0,
        )
        store = self._store
        yield GaugeMetricFamily(
            "opencompute_publish_local_only",
            "1 when a wallet hotkey publishes into the local sqlite backend: nothing reaches the network.",
            value=1.0 if local_only(ident, store) else 0.0,
        )
        if store is None:
            return
        backend = getattr(store, "backend", "unknown")
        store_info = GaugeMetricFamily(
            "opencompute_state_store_info", "The state store in use.", labels=["backend", "project"]
        )
        store_info.add_metric([backend, getattr(store, "entity_project", "")], 1.0)
        yield store_info
        requests = CounterMetricFamily(
            "opencompute_state_store_requests_total",
            "Upstream requests made to the state store, by operation.",
            labels=["backend", "operation"],
        )
        for operation, count in sorted(_request_counts(store).items()):
            requests.add_metric([backend, operation], count)
        yield requests


def _request_counts(store: StateStore) -> dict[str, int]:
    counts = getattr(store, "request_counts", None)
    if callable(counts):
        return dict(counts())
    return {"all": store.request_count()}
