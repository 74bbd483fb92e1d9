"""``opencompute-exporter register-prometheus``: point the on-chain Prometheus record at our exporter.

Submits ``SubtensorModule.serve_prometheus(netuid, version, ip, port, ip_type)`` signed by the
hotkey. On SN27 that record is the validator's software-version beacon: miners read its
``version``, and the validator neuron re-serves (at port 8091) whenever the on-chain version
differs from its own. So the version is never ours: by default the registrar keeps the version on
chain and changes only the ip and port (the exporter's: 9928 on a validator, 9927 on a miner).
The neuron compares only the version, so it never reacts to our ip/port; when it upgrades, it
serves once, and we serve once after the serving rate limit, keeping its new version
(docs/metrics/registrar.md, "Living with the neuron"). A hotkey without a validator permit is a
miner's: refused (exit 15) unless ``--registrar.role=miner``.

It reads the current record first and does nothing when version, ip, port and ip_type already
match the chain (``--force`` re-serves), checks locally what the chain would reject, and retries
only transport failures, with bounded exponential backoff and full jitter. Run it once (cron, a
systemd timer, a deploy hook) or as a loop (``--registrar.interval 10m``) that waits out the
serving rate limit and serves its own metrics on ``--web.listen-address`` (default :9930).

Exit codes (also in ``--help``):

====  ========================================================================
   0  served, already up to date (skipped), or ``--dry-run``
   1  unexpected internal error
   2  invalid flags or environment
   3  hotkey could not be loaded (``--wallet.*``, ``--hotkey.uri``)
   4  no public IP address could be discovered (pass ``--registrar.ip``)
  10  invalid IP: zero, unspecified or loopback (127.0.0.0/8, ::1)
  11  invalid ip_type (not 4 or 6)
  12  invalid port (0 or outside 1..65535)
  13  IP out of range (IPv4 >= u32::MAX, i.e. 255.255.255.255)
  14  hotkey not registered on the subnet
  15  hotkey is a miner's (no validator permit); pass --registrar.role=miner to serve anyway
  16  no record on chain to keep the version of; pass --registrar.version
  20  rate limited (``ServingRateLimitExceeded``); never retried
  21  other chain error, reported with the chain's error name; never retried
  22  chain unreachable after ``--registrar.max-attempts`` / ``--registrar.max-retry-time``
====  ========================================================================

bittensor (0.3-0.7 s to import) is imported only inside :func:`run`, so ``--help`` stays fast.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from exporters.core.config import (
    ConfigError,
    Flag,
    FlagSet,
    choice,
    parse_duration,
    parse_netuid,
    positive_duration,
    positive_int,
    web_flags,
)
from exporters.registrar.record import (
    EXIT_CODE_HELP,
    NEURON_PORT,
    PORT_BY_ROLE,
    ExitCode,
    IPAddress,
    Role,
    Target,
    decode_version,
    discover_ip,
    parse_ip,
    parse_port,
    parse_version,
)

log = logging.getLogger("opencompute.registrar")

HELP_EPILOG = EXIT_CODE_HELP
DEFAULT_NETUID = 27
ROLES = ("auto", "validator", "miner")
DEFAULT_WALLET_PATH = "~/.bittensor/wallets"


class KeyLoadError(Exception):
    """The hotkey could not be loaded from the wallet or the URI."""


def _endpoint(text: str) -> str:
    t = text.strip()
    if not t.startswith(("ws://", "wss://")):
        raise ValueError(f"expected a ws:// or wss:// URL, got {text!r}")
    return t


def flags() -> FlagSet:
    """The registrar's flags; wallet flags are named as bittensor users know them."""
    fs = FlagSet()
    fs.add(
        Flag("wallet.name", "Wallet (coldkey directory) name.", default="default"),
        Flag("wallet.hotkey", "Hotkey name inside the wallet; it signs the extrinsic.", default="default"),
        Flag("wallet.path", "Directory holding the wallets.", default=DEFAULT_WALLET_PATH, metavar="DIR"),
        Flag(
            "hotkey.uri",
            "Sign with a key derived from a URI such as //Alice instead of the wallet (dev chains only: "
            "the secret is visible in the process list).",
            default=None,
            metavar="URI",
        ),
        Flag("netuid", "Subnet to publish the record on.", default=DEFAULT_NETUID, convert=parse_netuid),
        Flag(
            "subtensor.network",
            "Network name (finney, test, archive, devnet, local) or a ws:// / wss:// URL.",
            default="finney",
        ),
        Flag(
            "subtensor.chain-endpoint",
            "Chain endpoint URL; overrides --subtensor.network.",
            default=None,
            convert=_endpoint,
            metavar="URL",
        ),
        Flag(
            "registrar.ip",
            "Public IP to publish. Default: the host's primary address (found without sending "
            "packets), refused when it is private or loopback.",
            default=None,
            convert=parse_ip,
            metavar="IP",
        ),
        Flag(
            "registrar.role",
            "auto: a hotkey with a validator permit is a validator's, any other a miner's and refused "
            "(exit 15); validator; or miner, to publish a miner's record anyway.",
            default="auto",
            convert=choice(ROLES),
        ),
        Flag(
            "registrar.port",
            f"Port to publish. Default follows the role: {PORT_BY_ROLE[Role.VALIDATOR]} (validator "
            f"exporter) or {PORT_BY_ROLE[Role.MINER]} (miner exporter).",
            default=None,
            convert=parse_port,
            metavar="PORT",
        ),
        Flag(
            "registrar.version",
            "Version to publish: MAJOR.MINOR.PATCH (encoded 100*major+10*minor+patch; minor and "
            "patch must be < 10) or an integer. Default: keep the version on chain, which is the SN27 "
            "neuron's; required when the hotkey has no record yet (exit 16 without it). On a "
            "validator an explicit version that differs from the neuron's makes the two fight.",
            default=None,
            convert=parse_version,
            metavar="VERSION",
        ),
        Flag(
            "registrar.neuron-port",
            "Port the SN27 neuron serves (bittensor's default axon port, or BT_AXON_PORT): a record "
            "with it is counted as the neuron's.",
            default=NEURON_PORT,
            convert=parse_port,
            metavar="PORT",
        ),
        Flag(
            "registrar.interval",
            "Re-check every this long and serve metrics meanwhile; 0 runs once and exits.",
            default=0.0,
            convert=parse_duration,
            metavar="DURATION",
        ),
        Flag(
            "registrar.max-attempts",
            "Attempts per run when the transport fails.",
            default=5,
            convert=positive_int,
        ),
        Flag(
            "registrar.max-retry-time",
            "Total time budget per run, retries and backoff included.",
            default=300.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "registrar.attempt-timeout",
            "Time limit for one attempt (connect, read, submit, inclusion).",
            default=120.0,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            "wait-for-finalization",
            "Wait for finalization instead of inclusion only.",
            default=False,
            is_bool=True,
        ),
        Flag(
            "force", "Serve even when the on-chain record is already up to date.", default=False, is_bool=True
        ),
        Flag(
            "dry-run",
            "Print the exact call (module, function, params) and the signer, then exit 0 without "
            "touching the chain.",
            default=False,
            is_bool=True,
        ),
    )
    fs.add(*web_flags(9930))
    return fs


def chain_target(values: dict[str, Any]) -> str:
    """The network name or URL for ``bittensor.Client``, validated against bittensor's presets."""
    from bittensor.settings import resolve_endpoint

    target = values["subtensor_chain_endpoint"] or values["subtensor_network"]
    try:
        resolve_endpoint(target)
    except ValueError as exc:
        raise ConfigError([f"--subtensor.network={target!r}: {exc}"]) from None
    return target


def load_signer(values: dict[str, Any]) -> Any:
    """The hotkey keypair: from ``--hotkey.uri`` or the wallet files.

    Uses ``exporters.core.keys`` when the suite provides it, else bittensor 11 directly.
    """
    uri = values["hotkey_uri"]
    name, hotkey = values["wallet_name"], values["wallet_hotkey"]
    path = os.path.expanduser(values["wallet_path"])
    keys = (
        importlib.import_module("exporters.core.keys")
        if importlib.util.find_spec("exporters.core.keys") is not None
        else None
    )
    try:
        if uri:
            if keys is not None:
                return keys.keypair_from_uri(uri)
            from bittensor_core import Keypair

            return Keypair.create_from_uri(uri)
        if keys is not None:
            return keys.load_hotkey(name, hotkey, path)
        import bittensor as bt

        return bt.Wallet(name, hotkey, path).hotkey
    except Exception as exc:  # every failure here means "no usable key": exit 3
        where = "--hotkey.uri" if uri else f"wallet {name!r} hotkey {hotkey!r} under {path}"
        raise KeyLoadError(f"cannot load the hotkey from {where}: {exc}") from exc


def role_of(values: dict[str, Any]) -> Role | None:
    """The explicit role, or None to detect it from the chain's validator permit."""
    text = values["registrar_role"]
    return None if text == "auto" else Role(text)


def target_factory(values: dict[str, Any]) -> Callable[[], Target]:
    """A function giving what to publish; rediscovers the IP each run unless it is explicit."""
    explicit: IPAddress | None = values["registrar_ip"]
    if (
        explicit is not None
        and not explicit.is_global
        and not explicit.is_loopback
        and not explicit.is_unspecified
    ):
        log.warning(
            "--registrar.ip %s is not a public address; miners outside its network cannot use it", explicit
        )

    def target() -> Target:
        address = explicit if explicit is not None else discover_ip()
        return Target(values["netuid"], address, values["registrar_port"], values["registrar_version"])

    return target


def make_client(target: str) -> Any:
    """A fresh ``bittensor.Client`` for a network name or URL (the chain boundary)."""
    import bittensor as bt

    return bt.Client(target)


def build_registrar(
    values: dict[str, Any], signer: Any, client_factory: Callable[[], Any] | None = None
) -> Any:
    """Wire a :class:`~exporters.registrar.service.Registrar` from resolved flag values."""
    from exporters.registrar.service import Registrar, RetryPolicy

    if client_factory is None:
        target = chain_target(values)

        def client_factory() -> Any:
            return make_client(target)

    return Registrar(
        signer=signer,
        client_factory=client_factory,
        target=target_factory(values),
        role=role_of(values),
        neuron_port=values["registrar_neuron_port"],
        wait_rate_limit=values["registrar_interval"] > 0,
        policy=RetryPolicy(
            max_attempts=values["registrar_max_attempts"],
            max_time=values["registrar_max_retry_time"],
            attempt_timeout=values["registrar_attempt_timeout"],
        ),
        force=values["force"],
        wait_for_finalization=values["wait_for_finalization"],
    )


def dry_run(values: dict[str, Any], signer: Any, out: Any = None) -> int:
    """Print the call a submission would compose, without any chain access.

    What only the chain can tell (the version to keep, the role when ``auto``) is printed as
    such, never guessed.
    """
    from exporters.registrar.record import DiscoveryError, LocalCheckError
    from exporters.registrar.service import build_call

    out = out or sys.stdout
    try:
        target = target_factory(values)()
        target.precheck()
    except DiscoveryError as exc:
        log.error("%s", exc)
        return int(ExitCode.IP_DISCOVERY)
    except LocalCheckError as exc:
        log.error("%s", exc.message)
        return int(exc.code)
    import asyncio

    role = role_of(values)
    port = target.port if target.port is not None else PORT_BY_ROLE[role or Role.VALIDATOR]
    desired = Target(target.netuid, target.address, port, target.version if target.version else 0)
    call = asyncio.run(build_call(desired.resolve(None, role or Role.VALIDATOR)))
    params = dict(call.params)
    if target.version is None:
        params["version"] = "kept from the on-chain record"
    target_name = values["subtensor_chain_endpoint"] or values["subtensor_network"]
    document = {
        "dry_run": True,
        "network": target_name,
        "signer": signer.ss58_address,
        "signer_role": "hotkey",
        "role": role.value if role else "validator if the hotkey has a validator permit, else refused",
        "call": {"module": call.module, "function": call.function, "params": params},
        "ip": str(target.address),
        "version": (
            f"{target.version} ({decode_version(target.version)})"
            if target.version is not None
            else "kept from the on-chain record (the neuron's)"
        ),
        "wait_for_finalization": values["wait_for_finalization"],
    }
    print(json.dumps(document, indent=2), file=out)
    return int(ExitCode.OK)


def run(values: dict[str, Any]) -> int:
    """Run once (exit code per outcome) or loop with a metrics endpoint."""
    from exporters.core.runtime import setup_logging

    setup_logging(values["log_level"], values["log_format"])
    try:
        signer = load_signer(values)
    except KeyLoadError as exc:
        log.error("%s", exc)
        return int(ExitCode.KEY)
    if values["dry_run"]:
        return dry_run(values, signer)
    registrar = build_registrar(values, signer)
    interval = values["registrar_interval"]
    if interval <= 0:
        return int(registrar.run_once().code)
    return _serve_loop(values, registrar, interval)


def registrar_loop(registrar: Any, interval: float) -> Any:
    """The background loop: every ``interval``, or sooner when a rate-limit wait ends first."""
    from exporters.core.runtime import Loop

    # run_once never raises; if a bug made it, the Loop's supervision restarts it with backoff.
    return Loop(
        "registrar",
        interval,
        registrar.run_once,
        next_delay=lambda result: registrar.next_delay(interval, result),
    )


def _serve_loop(values: dict[str, Any], registrar: Any, interval: float) -> int:
    from exporters.core.runtime import Exporter
    from exporters.core.webconfig import load_web_config
    from exporters.registrar.metrics import RegistrarCollector

    web = load_web_config(values["web_config_file"])
    exporter = Exporter(
        "registrar",
        [RegistrarCollector(registrar.state)],
        loops=[registrar_loop(registrar, interval)],
    )
    log.info("registrar loop: hotkey %s, netuid %d, every %gs", registrar.hotkey, values["netuid"], interval)
    return exporter.serve(values, web)
