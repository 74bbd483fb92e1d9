"""The chain as metrics: every uid of the subnet as the metagraph reports it, refreshed in the background.

What an operator watches on a block explorer (stake, trust, consensus, incentive, dividends,
emission, rank, validator trust and permit, weight-setting lag, registration and immunity, the
axon and Prometheus records), read through bittensor 11 on the reader's own cadence, never on a
scrape. One refresh is a fixed handful of requests pinned to one block, whatever the subnet size
(the original makes one ``neuron_for_uid`` RPC per uid):

1. ``SubnetInfoRuntimeApi.get_metagraph(netuid)``: one runtime-API call, every per-uid column
   plus block, tempo and immunity period (what ``bittensor``'s ``subnets.metagraph`` reads);
2. ``SubtensorModule.ValidatorTrust[netuid]``: one storage value (not in the metagraph record);
3. ``SubtensorModule.Prometheus[netuid]``: one storage-map read (the on-chain Prometheus records);
4. ``SubtensorModule.OwnedHotkeys`` for ``--network.our-coldkeys``: one batched read, only when set.

Each neuron is decoded on its own: a malformed column entry drops that uid and counts
``opencompute_chain_neuron_decode_errors_total``; the rest is exported. A failed or slow read keeps
serving the previous view, with its age and a bounded failure reason. Per-uid series carry
``uid`` and ``hotkey``, so when a new hotkey registers on an old uid its series are new series:
the two histories never mix. ::

    opencompute_chain_block 5012345.0
    opencompute_chain_neuron_epoch_emission_alpha{uid="12",hotkey="5F..."} 1.234
    opencompute_chain_neuron_blocks_since_last_update{uid="0",hotkey="5G..."} 87.0
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.config import Flag, positive_duration
from exporters.network.ours import OurHotkeys, ss58_list

log = logging.getLogger(__name__)

READ_FAILURE_REASONS = ("unavailable", "timeout", "no_subnet", "decode", "busy", "error")
RAO_PER_ALPHA = 1e9
U16_MAX = 65535  # the runtime's PerU16 scores: raw / 65535
DEFAULT_CHAIN_INTERVAL = 300.0


class ChainReadError(Exception):
    """A refresh that produced no view; ``reason`` is one of :data:`READ_FAILURE_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason if reason in READ_FAILURE_REASONS else "error"


@dataclass(frozen=True)
class Neuron:
    """One uid at the view's block, in the units the metrics use (alpha, 0..1 ratios, blocks)."""

    uid: int
    hotkey: str
    coldkey: str
    active: bool
    validator_permit: bool
    stake_alpha: float
    rank: float
    trust: float
    consensus: float
    incentive: float
    dividends: float
    validator_trust: float
    pruning_score: float
    emission_alpha: float
    last_update: int
    registered_at: int
    axon_ip: str
    axon_port: int
    axon_version: int
    prometheus_version: int


@dataclass(frozen=True)
class ChainView:
    """The subnet at one block."""

    netuid: int
    block: int
    tempo: int
    immunity_period: int
    neurons: tuple[Neuron, ...]
    fetched_at: float
    name: str = ""
    miner_positions: Mapping[int, int] = field(default_factory=dict)

    def immune(self, neuron: Neuron) -> bool:
        """Still inside the immunity period (cannot be pruned for a newer registration)."""
        return self.block - neuron.registered_at < self.immunity_period


# --- decoding (the shapes bittensor's transport hands back for the runtime's Metagraph) ----------


def _at(column: Sequence[Any], uid: int) -> Any:
    """The uid's entry of a per-uid column, None past its end (bittensor pads short columns too)."""
    return column[uid] if uid < len(column) else None


def _score(column: Sequence[Any], uid: int) -> float:
    """A PerU16 score (raw u16 / 65535), as bittensor's ``ratio_fraction("PerU16", raw)``."""
    raw = int(_at(column, uid) or 0)
    if not 0 <= raw <= U16_MAX:
        raise ValueError(f"score {raw} out of u16 range")
    return raw / U16_MAX


def _int(column: Sequence[Any], uid: int) -> int:
    value = int(_at(column, uid) or 0)
    if value < 0:
        raise ValueError(f"negative value {value}")
    return value


def _axon(axon: Any) -> tuple[str, int, int]:
    """(ip, port, version) of an AxonInfo record; ("", 0, 0) when nothing is served."""
    if axon is None:
        return "", 0, 0
    if not isinstance(axon, Mapping):
        raise TypeError(f"axon is {type(axon).__name__}, not a record")
    ip = int(axon.get("ip") or 0)
    version = int(axon.get("version") or 0)
    port = int(axon.get("port") or 0)
    if not ip:
        return "", port, version
    import ipaddress

    kind = ipaddress.IPv6Address if int(axon.get("ip_type") or 4) == 6 else ipaddress.IPv4Address
    return str(kind(ip)), port, version


def _column(graph: Mapping[str, Any], key: str) -> Sequence[Any]:
    values = graph.get(key)
    return values if isinstance(values, (list, tuple)) else ()


def decode_neuron(
    graph: Mapping[str, Any],
    uid: int,
    validator_trust: Sequence[Any],
    prometheus: Mapping[str, Mapping[str, Any]],
) -> Neuron:
    """One uid from the metagraph's columns; raises on a malformed entry (the caller counts it)."""
    hotkey = graph["hotkeys"][uid]
    if not isinstance(hotkey, str) or not hotkey:
        raise TypeError(f"uid {uid}: hotkey is {hotkey!r}")

    def col(key: str) -> Sequence[Any]:
        return _column(graph, key)

    ip, port, axon_version = _axon(_at(col("axons"), uid))
    record = prometheus.get(hotkey)
    return Neuron(
        uid=uid,
        hotkey=hotkey,
        coldkey=str(_at(col("coldkeys"), uid) or ""),
        active=bool(_at(col("active"), uid)),
        validator_permit=bool(_at(col("validator_permit"), uid)),
        stake_alpha=_int(col("total_stake"), uid) / RAO_PER_ALPHA,
        rank=_score(col("rank"), uid),
        trust=_score(col("trust"), uid),
        consensus=_score(col("consensus"), uid),
        incentive=_score(col("incentives"), uid),
        dividends=_score(col("dividends"), uid),
        validator_trust=_score(validator_trust, uid),
        pruning_score=_score(col("pruning_score"), uid),
        emission_alpha=_int(col("emission"), uid) / RAO_PER_ALPHA,
        last_update=_int(col("last_update"), uid),
        registered_at=_int(col("block_at_registration"), uid),
        axon_ip=ip,
        axon_port=port,
        axon_version=axon_version,
        prometheus_version=int(record.get("version") or 0) if isinstance(record, Mapping) else 0,
    )


def decode_view(
    netuid: int,
    graph: Mapping[str, Any],
    validator_trust: Sequence[Any] | None,
    prometheus_rows: Sequence[tuple[Any, Any]] | None,
    fetched_at: float,
) -> tuple[ChainView, int]:
    """The view and how many neurons failed to decode (each one dropped, the others kept)."""
    try:
        block, tempo = int(graph["block"]), int(graph["tempo"])
        immunity = int(graph.get("immunity_period") or 0)
        hotkeys = graph["hotkeys"]
        if not isinstance(hotkeys, (list, tuple)):
            raise TypeError("hotkeys is not a list")
    except (KeyError, TypeError, ValueError) as exc:
        raise ChainReadError("decode", f"metagraph record: {exc}") from exc
    prometheus = {str(hk): rec for hk, rec in prometheus_rows or [] if isinstance(rec, Mapping)}
    vtrust = validator_trust if isinstance(validator_trust, (list, tuple)) else ()
    neurons, errors = [], 0
    for uid in range(len(hotkeys)):
        try:
            neurons.append(decode_neuron(graph, uid, vtrust, prometheus))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            errors += 1
            log.warning("chain: uid %d of netuid %d did not decode (%s); skipped", uid, netuid, exc)
    name = graph.get("name")
    text = bytes(int(b) for b in name).decode("utf-8", "replace") if isinstance(name, list) else ""
    view = ChainView(
        netuid, block, tempo, immunity, tuple(neurons), fetched_at, text, miner_positions(neurons)
    )
    return view, errors


def miner_positions(neurons: Sequence[Neuron]) -> dict[int, int]:
    """uid -> 1-based place by incentive among uids without a validator permit (ties share a place)."""
    miners = sorted((n for n in neurons if not n.validator_permit), key=lambda n: -n.incentive)
    places: dict[int, int] = {}
    for index, neuron in enumerate(miners):
        tied = index and miners[index - 1].incentive == neuron.incentive
        places[neuron.uid] = places[miners[index - 1].uid] if tied else index + 1
    return places


# --- reading ---------------------------------------------------------------------------------


class ChainClient:
    """The four reads of one refresh through bittensor 11's async ``Client``, pinned to one block.

    The client lives on a private event loop thread; each read runs under ``asyncio.wait_for``, so
    an endpoint that accepts the connection and never answers is cancelled after ``timeout`` (the
    connection is then dropped and reopened on the next read) instead of holding a thread forever.
    ``substrate`` lets tests drive the real SDK over an in-memory ``bittensor.Substrate``.
    bittensor is imported on first use (0.7 s).
    """

    def __init__(
        self,
        network: str = "finney",
        endpoint: str | None = None,
        substrate: Any = None,
        timeout: float = 30.0,
    ) -> None:
        self._target = endpoint or network
        self._substrate = substrate
        self.timeout = timeout
        self._client: Any = None
        self._loop: Any = None  # an asyncio loop; asyncio is imported on first use (keeps --help fast)

    def _run(self, coro: Any, timeout: float) -> Any:
        import asyncio

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="chain-client", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop).result()

    async def _connected(self) -> Any:
        if self._client is None:
            import bittensor as bt

            client = bt.Client(self._target, substrate=self._substrate)
            await client.connect()
            self._client = client
        return self._client

    async def _read(self, netuid: int, coldkeys: Sequence[str]) -> tuple[Any, Any, Any, list[Any]]:
        from bittensor._generated.runtime_apis import SubnetInfoRuntimeApi
        from bittensor._generated.storage import SubtensorModule

        snap = await (await self._connected()).at()
        graph = await snap.runtime(SubnetInfoRuntimeApi.get_metagraph, [netuid])
        if not isinstance(graph, Mapping):
            raise ChainReadError("no_subnet", f"subnet {netuid} does not exist on {self._target}")
        vtrust = await snap.query(SubtensorModule.ValidatorTrust, [netuid])
        prometheus = await snap.query_map(SubtensorModule.Prometheus, [netuid])
        owned = (
            await snap.query_batch(SubtensorModule.OwnedHotkeys, [[ck] for ck in coldkeys])
            if coldkeys
            else []
        )
        return graph, vtrust, prometheus, list(owned or [])

    def read(self, netuid: int, coldkeys: Sequence[str]) -> tuple[Any, Any, Any, list[Any]]:
        """(metagraph record, validator trust, Prometheus rows, owned hotkeys per coldkey)."""
        try:
            return self._run(self._read(netuid, coldkeys), self.timeout)
        except ChainReadError:
            raise
        except TimeoutError as exc:
            self.reset()
            raise ChainReadError(
                "timeout", f"no answer from {self._target} within {self.timeout:g}s"
            ) from exc
        except (ValueError, TypeError, KeyError) as exc:  # the transport could not decode an answer
            raise ChainReadError("decode", f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            self.reset()
            raise ChainReadError("unavailable", f"{type(exc).__name__}: {exc}") from exc

    def reset(self) -> None:
        """Drop the connection; the next read reconnects."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            self._run(client.close(), 5.0)
        except Exception:
            log.debug("closing the bittensor client failed", exc_info=True)


@dataclass
class ChainStatus:
    """How the reader is doing; the collector exports it beside the view."""

    last_success: float = 0.0
    last_attempt_ok: bool = False
    last_duration: float = 0.0
    failures: Counter = field(default_factory=Counter)
    decode_errors: int = 0
    last_reason: str = ""


class ChainReader:
    """Refreshes the :class:`ChainView` (the body of a ``Loop``); scrapes only read the last view.

    A read runs in a worker thread abandoned after ``timeout``; while it still hangs, later ticks
    count ``busy`` instead of stacking up more. On success the hotkeys owned by
    ``our_coldkeys`` go to ``ours`` as source ``coldkey``; on failure they stay as they were.
    """

    def __init__(
        self,
        client: Any,
        netuid: int,
        *,
        timeout: float = 30.0,
        our_coldkeys: Sequence[str] = (),
        ours: OurHotkeys | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.netuid = netuid
        self.timeout = timeout
        self.our_coldkeys = tuple(our_coldkeys)
        self.ours = ours
        self.clock = clock
        self.view: ChainView | None = None
        self.status = ChainStatus()
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None

    def __call__(self) -> None:
        self.refresh()

    def refresh(self) -> bool:
        """One attempt; True when a new view was swapped in."""
        if self._worker is not None and self._worker.is_alive():
            return self._failed("busy", "a previous chain read is still running", 0.0)
        started = time.perf_counter()
        box: list[Any] = []
        worker = threading.Thread(target=self._read_into, args=(box,), name="chain-read", daemon=True)
        self._worker = worker
        worker.start()
        worker.join(self.timeout)
        elapsed = time.perf_counter() - started
        if worker.is_alive():
            return self._failed("timeout", f"no answer within {self.timeout:g}s", elapsed)
        result = box[0]
        if isinstance(result, ChainReadError):
            return self._failed(result.reason, str(result), elapsed)
        if isinstance(result, BaseException):
            return self._failed("error", f"{type(result).__name__}: {result}", elapsed)
        view, errors, owned = result
        with self._lock:
            self.view = view
            self.status.last_success = view.fetched_at
            self.status.last_attempt_ok = True
            self.status.last_duration = elapsed
            self.status.decode_errors += errors
            self.status.last_reason = ""
        if self.ours is not None and self.our_coldkeys:
            self.ours.set("coldkey", owned)
        return True

    def _read_into(self, box: list[Any]) -> None:
        try:
            graph, vtrust, prometheus, owned = self.client.read(self.netuid, self.our_coldkeys)
            view, errors = decode_view(self.netuid, graph, vtrust, prometheus, self.clock())
            hotkeys = [str(hk) for hotkeys in owned for hk in (hotkeys or [])]
            box.append((view, errors, hotkeys))
        except BaseException as exc:  # noqa: BLE001 - handed to refresh() through the box
            box.append(exc)

    def _failed(self, reason: str, detail: str, elapsed: float) -> bool:
        log.warning("chain read of netuid %d failed (%s); serving the previous view", self.netuid, detail)
        with self._lock:
            self.status.failures[reason] += 1
            self.status.last_attempt_ok = False
            self.status.last_duration = elapsed
            self.status.last_reason = reason
        return False

    def snapshot(self) -> tuple[ChainView | None, ChainStatus]:
        with self._lock:
            status = ChainStatus(
                self.status.last_success,
                self.status.last_attempt_ok,
                self.status.last_duration,
                Counter(self.status.failures),
                self.status.decode_errors,
                self.status.last_reason,
            )
            return self.view, status


# --- metrics -----------------------------------------------------------------------------

_P = "opencompute_chain_"

# (metric suffix, HELP, value of a neuron in its view)
_PER_UID: tuple[tuple[str, str, Callable[[ChainView, Neuron], float]], ...] = (
    (
        "neuron_stake_alpha",
        "Total stake on the hotkey in the subnet's alpha (alpha + weighted TAO).",
        lambda v, n: n.stake_alpha,
    ),
    ("neuron_rank_ratio", "Rank (0..1).", lambda v, n: n.rank),
    (
        "neuron_trust_ratio",
        "Trust (0..1): how much of the miner's rank survives consensus clipping.",
        lambda v, n: n.trust,
    ),
    ("neuron_consensus_ratio", "Consensus (0..1).", lambda v, n: n.consensus),
    (
        "neuron_incentive_ratio",
        "Incentive (0..1): the miner's share of miner emission.",
        lambda v, n: n.incentive,
    ),
    (
        "neuron_dividends_ratio",
        "Dividends (0..1): the validator's share of validator emission.",
        lambda v, n: n.dividends,
    ),
    ("neuron_validator_trust_ratio", "Validator trust (0..1).", lambda v, n: n.validator_trust),
    (
        "neuron_pruning_score_ratio",
        "Pruning score (0..1); the lowest non-immune uid is replaced at the next registration.",
        lambda v, n: n.pruning_score,
    ),
    (
        "neuron_epoch_emission_alpha",
        "Alpha emitted to the uid in the subnet's last epoch (one tempo).",
        lambda v, n: n.emission_alpha,
    ),
    (
        "neuron_validator_permit",
        "1 if the uid holds a validator permit.",
        lambda v, n: float(n.validator_permit),
    ),
    (
        "neuron_active",
        "1 if the uid is active (set weights or was updated within the activity cutoff).",
        lambda v, n: float(n.active),
    ),
    (
        "neuron_last_update_block",
        "Block of the uid's last weight-set (its registration block if never).",
        lambda v, n: n.last_update,
    ),
    (
        "neuron_blocks_since_last_update",
        "Blocks since the uid last set weights (the view's block - last_update).",
        lambda v, n: max(0, v.block - n.last_update),
    ),
    (
        "neuron_registration_block",
        "Block at which the current hotkey registered on this uid.",
        lambda v, n: n.registered_at,
    ),
    (
        "neuron_immune",
        "1 while the uid is inside the subnet's immunity period (cannot be pruned).",
        lambda v, n: float(v.immune(n)),
    ),
    (
        "neuron_miner_position",
        "1-based place of the uid by incentive among uids without a validator permit (ties share a "
        "place; 0 for validators).",
        lambda v, n: v.miner_positions.get(n.uid, 0),
    ),
    (
        "neuron_axon_version",
        "Version in the uid's served axon record (0: none).",
        lambda v, n: n.axon_version,
    ),
    (
        "neuron_prometheus_version",
        "Version in the uid's on-chain Prometheus record (0: none served).",
        lambda v, n: n.prometheus_version,
    ),
)


class ChainCollector(SubCollector):
    """The last chain view per uid, plus the reader's health (age, failures, decode errors)."""

    name = "chain"

    def __init__(self, reader: ChainReader, clock: Callable[[], float] = time.time) -> None:
        self.reader = reader
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        view, status = self.reader.snapshot()
        yield from self._health(view, status)
        if view is None:
            return
        yield from self._subnet(view)
        labels = ["uid", "hotkey"]
        info = GaugeMetricFamily(
            _P + "neuron_info",
            "The hotkey on a uid (always 1), with its coldkey and registration block; a new hotkey on an "
            "old uid is a new series.",
            labels=[*labels, "coldkey", "registration_block"],
        )
        axon = GaugeMetricFamily(
            _P + "neuron_axon_info",
            "The uid's served axon endpoint (always 1).",
            labels=[*labels, "ip", "port"],
        )
        families = [GaugeMetricFamily(_P + suffix, help_, labels=labels) for suffix, help_, _ in _PER_UID]
        for n in view.neurons:
            key = [str(n.uid), n.hotkey]
            info.add_metric([*key, n.coldkey, str(n.registered_at)], 1.0)
            if n.axon_ip:
                axon.add_metric([*key, n.axon_ip, str(n.axon_port)], 1.0)
            for family, (_, _, value) in zip(families, _PER_UID, strict=True):
                family.add_metric(key, float(value(view, n)))
        yield info
        yield axon
        yield from families

    def _health(self, view: ChainView | None, status: ChainStatus) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            _P + "up", "1 if the last chain read succeeded (the view is served either way)."
        )
        up.add_metric([], 1.0 if status.last_attempt_ok else 0.0)
        yield up
        last = GaugeMetricFamily(
            _P + "last_success_timestamp_seconds",
            "When the served chain view was read (0: never); its age is time() minus this.",
        )
        last.add_metric([], status.last_success)
        yield last
        duration = GaugeMetricFamily(
            _P + "read_duration_seconds", "Wall time of the last chain read attempt."
        )
        duration.add_metric([], status.last_duration)
        yield duration
        failures = CounterMetricFamily(
            _P + "read_failures",
            "Chain reads that produced no new view, by bounded reason.",
            labels=["reason"],
        )
        for reason in READ_FAILURE_REASONS:
            failures.add_metric([reason], float(status.failures.get(reason, 0)))
        yield failures
        errors = CounterMetricFamily(
            _P + "neuron_decode_errors", "Neurons left out of a view because their record did not decode."
        )
        errors.add_metric([], float(status.decode_errors))
        yield errors

    def _subnet(self, view: ChainView) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            _P + "subnet_info", "The subnet the view is of (always 1).", labels=["netuid", "name"]
        )
        info.add_metric([str(view.netuid), view.name], 1.0)
        yield info
        for suffix, help_, value in (
            ("block", "Block the chain view was read at.", view.block),
            (
                "tempo_blocks",
                "The subnet's tempo: blocks between epochs (emission is paid per epoch).",
                view.tempo,
            ),
            (
                "immunity_period_blocks",
                "Blocks a new registration is protected from pruning.",
                view.immunity_period,
            ),
            ("neurons", "Uids in the chain view (decoded ones).", len(view.neurons)),
        ):
            family = GaugeMetricFamily(_P + suffix, help_)
            family.add_metric([], float(value))
            yield family


# --- configuration -------------------------------------------------------------------------


def chain_flags() -> list[Flag]:
    """The chain collector's flags; its endpoint comes from ``--subtensor.*`` (shared with trust)."""
    return [
        Flag(
            "network.our-coldkeys",
            "Comma-separated coldkeys (ss58) whose hotkeys, read on chain at every chain refresh, count as "
            'yours (source="coldkey" in opencompute_network_our_hotkey_info).',
            default=(),
            convert=ss58_list("network.our-coldkeys", allow_empty=True),
            metavar="COLDKEY[,COLDKEY...]",
        ),
        Flag(
            "network.chain-refresh-interval",
            "How often the subnet's neurons are read from the chain (stake, emission, trust, weights, ...). "
            "Reads are pinned to one block and never happen on a scrape.",
            default=DEFAULT_CHAIN_INTERVAL,
            convert=positive_duration,
            metavar="DURATION",
        ),
    ]


def chain_client(values: Mapping[str, Any]) -> ChainClient | None:
    """The bittensor client from ``--subtensor.*``; None for ``--subtensor.network none``."""
    network = (values.get("subtensor_network") or "finney").strip()
    endpoint = values.get("subtensor_chain_endpoint")
    if not endpoint and network.lower() in {"none", "off", ""}:
        return None
    return ChainClient(network, endpoint)


def build_reader(values: Mapping[str, Any], ours: OurHotkeys, client: Any) -> ChainReader:
    """The reader over ``client`` (a :class:`ChainClient`, or the demo's simulated chain)."""
    timeout = float(values.get("network_chain_timeout") or 30.0)
    if isinstance(client, ChainClient):
        client.timeout = timeout
    return ChainReader(
        client,
        int(values.get("netuid", 27)),
        # The reader's own deadline is the backstop for clients without one (the demo's chain).
        timeout=timeout + 5.0,
        our_coldkeys=values.get("network_our_coldkeys") or (),
        ours=ours,
    )
