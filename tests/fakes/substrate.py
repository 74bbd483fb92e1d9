"""FAKE of the chain transport: an in-memory implementation of bittensor 11's ``Substrate`` protocol.

bittensor 11 writes everything above the transport (``Client``, the executor, intents, reads)
against ``bittensor.Substrate``, and ``bt.Client(substrate=...)`` accepts any implementation. This
fake stands in for the websocket/RPC backend only, so tests exercise bittensor's real intent
builders, executor and result types without a network.

What it holds, all plain Python and open for tests (and other exporters' tests) to extend:

- ``storage``: ``{(pallet, item): {params tuple: value}}``, read by ``query``/``query_map``/
  ``query_batch``; values are what the real backend returns after decoding (dicts, ints, lists).
- ``constants`` and ``runtime_calls`` (a value, or a callable taking the params list).
- ``block``: the head block number; ``advance(n)``; every successful submission is included in a
  new block.
- registered hotkeys: :meth:`register_neuron` writes ``Uids``/``Keys``/``IsNetworkMember``/
  ``SubnetworkN`` the way the pallet does.
- scripted failures: :meth:`fail` queues exceptions for the next calls of a method (``HANG`` makes
  a call never return); raw transport errors are translated with bittensor's own ``RpcSubstrate``
  rules (``RpcConnectionError`` on connect, ``ChainError`` on reads and submissions).
- :meth:`reject_next_submit` scripts a chain rejection by error name (``ServingRateLimitExceeded``).
- dispatch: ``SubtensorModule.serve_prometheus`` is applied with the pallet's checks (ip type,
  address, registration, serving rate limit, port) and stored in ``Prometheus``; other calls
  succeed without effect unless a handler is added to ``dispatchers``.
- a log of everything: ``calls`` (method names), ``submissions`` (call, signer, flags).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from bittensor._generated import calls as generated_calls
from bittensor._generated.errors import ERRORS
from bittensor._substrate import _public_request_error, _public_rpc_error
from bittensor._transport.errors import MaxRetriesExceeded, RpcPolicyRejection, SubstrateRequestException
from bittensor.balance import Balance
from bittensor.result import ChainError, ExtrinsicResult, chain_error_from_substrate_request

HANG = object()
"""Queue with :meth:`FakeSubstrate.fail` to make a call block until cancelled (an endpoint that
accepts the connection and never answers)."""

_DOCS_BY_NAME = {info.name: info.docs for info in ERRORS.values()}
_UINT_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "u128": 128, "NetUid": 16, "MechId": 8}
U32_MAX = 2**32 - 1


@dataclass(frozen=True)
class ComposedCall:
    """What ``compose`` returns: the generated call, checked against its declared integer widths."""

    module: str
    function: str
    params: dict[str, Any]

    @property
    def data(self) -> bytes:
        # bittensor checks ``hasattr(call, "data")`` to tell composed calls from builders.
        return repr((self.module, self.function, sorted(self.params.items()))).encode()


@dataclass(frozen=True)
class Submission:
    """One ``submit`` that reached the fake chain."""

    call: ComposedCall
    signer: str
    nonce: int
    wait_for_inclusion: bool
    wait_for_finalization: bool
    period: int | None


Dispatcher = Callable[["FakeSubstrate", ComposedCall, str], str | None]


@dataclass
class FakeSubstrate:
    """An in-memory chain behind bittensor's ``Substrate`` protocol (see the module docstring)."""

    block: int = 1_000
    block_seconds: float = 12.0
    spec: int = 300
    token_symbols: dict[int, str] = field(default_factory=dict)
    storage: dict[tuple[str, str], dict[tuple, Any]] = field(default_factory=dict)
    constants: dict[tuple[str, str], Any] = field(default_factory=dict)
    runtime_calls: dict[tuple[str, str], Any] = field(default_factory=dict)
    dispatchers: dict[tuple[str, str], Dispatcher] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    connects: int = 0
    closes: int = 0
    _failures: dict[str, deque] = field(default_factory=dict)
    _rejections: deque = field(default_factory=deque)
    _nonces: dict[str, int] = field(default_factory=dict)
    connected: bool = False

    def __post_init__(self) -> None:
        self.dispatchers.setdefault(("SubtensorModule", "serve_prometheus"), serve_prometheus)
        self.constants.setdefault(("Aura", "SlotDuration"), int(self.block_seconds * 1000))

    # -- test helpers ---------------------------------------------------------------------------

    def set_storage(self, pallet: str, item: str, params: list | tuple, value: Any) -> None:
        self.storage.setdefault((pallet, item), {})[tuple(params)] = value

    def get_storage(self, pallet: str, item: str, params: list | tuple = ()) -> Any:
        return self.storage.get((pallet, item), {}).get(tuple(params))

    def register_neuron(self, netuid: int, hotkey: str, uid: int | None = None) -> int:
        """Give ``hotkey`` a UID on ``netuid`` (the next free one unless given); returns the UID."""
        if uid is None:
            uid = int(self.get_storage("SubtensorModule", "SubnetworkN", [netuid]) or 0)
        self.set_storage("SubtensorModule", "Uids", [netuid, hotkey], uid)
        self.set_storage("SubtensorModule", "Keys", [netuid, uid], hotkey)
        self.set_storage("SubtensorModule", "IsNetworkMember", [hotkey, netuid], True)
        count = int(self.get_storage("SubtensorModule", "SubnetworkN", [netuid]) or 0)
        self.set_storage("SubtensorModule", "SubnetworkN", [netuid], max(count, uid + 1))
        self.set_storage("SubtensorModule", "NetworksAdded", [netuid], True)
        return uid

    def fail(self, method: str, *errors: BaseException | object) -> None:
        """Queue exceptions (or :data:`HANG`) for the next calls of ``method``, one per call."""
        self._failures.setdefault(method, deque()).extend(errors)

    def reject_next_submit(self, *names: str) -> None:
        """Make the next submissions fail on chain with these error names, one per submission."""
        self._rejections.extend(names)

    def advance(self, blocks: int = 1) -> int:
        self.block += blocks
        return self.block

    def count(self, method: str) -> int:
        return self.calls.count(method)

    async def _enter(self, method: str, *, kind: str = "read") -> None:
        """Log the call and raise a scripted failure, translated as ``RpcSubstrate`` would."""
        self.calls.append(method)
        queue = self._failures.get(method)
        if not queue:
            return
        error = queue.popleft()
        if error is HANG:
            await asyncio.Event().wait()
        assert isinstance(error, BaseException)
        if kind == "connect":
            if isinstance(error, (SubstrateRequestException, ConnectionError, TimeoutError, OSError)):
                raise _public_rpc_error(error) from error
            raise error
        if kind == "submit":
            if isinstance(error, (RpcPolicyRejection, MaxRetriesExceeded)):
                raise _public_rpc_error(error) from error
            if not isinstance(error, SubstrateRequestException):
                raise ChainError(str(error)) from error
            raise _SubmitRejected(chain_error_from_substrate_request(error))
        if isinstance(error, SubstrateRequestException):
            raise _public_request_error(error) from error
        raise error

    # -- Substrate protocol: lifecycle ----------------------------------------------------------

    def balance(self, rao: int, netuid: int = 0) -> Balance:
        symbol = self.token_symbols.get(netuid) if netuid else None
        return Balance(int(rao), netuid, symbol)

    async def connect(self) -> None:
        await self._enter("connect", kind="connect")
        self.connects += 1
        self.connected = True

    async def close(self) -> None:
        self.calls.append("close")
        self.closes += 1
        self.connected = False

    # -- reads ----------------------------------------------------------------------------------

    async def block_hash(self, block: int | None = None) -> str:
        await self._enter("block_hash")
        return f"0x{(self.block if block is None else block):064x}"

    async def block_number(self) -> int:
        await self._enter("block_number")
        return self.block

    async def finalized_block_number(self) -> int:
        await self._enter("finalized_block_number")
        return max(0, self.block - 2)

    async def block_time(self) -> float:
        await self._enter("block_time")
        return self.block_seconds

    async def spec_version(self) -> int:
        await self._enter("spec_version")
        return self.spec

    async def get_block(self, block_number: int | None = None, block_hash: str | None = None) -> dict | None:
        await self._enter("get_block")
        number = self.block if block_number is None else block_number
        return {"header": {"number": number, "hash": f"0x{number:064x}"}, "extrinsics": []}

    async def query(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> Any:
        await self._enter("query")
        return self.get_storage(module, storage_function, params or [])

    async def map_has_entries(
        self, module: str, storage_function: str, params: list, block_hash: str | None = None
    ) -> bool:
        await self._enter("map_has_entries")
        prefix = tuple(params)
        return any(key[: len(prefix)] == prefix for key in self.storage.get((module, storage_function), {}))

    async def query_map(
        self, module: str, storage_function: str, params: list | None = None, block_hash: str | None = None
    ) -> list[tuple[Any, Any]]:
        await self._enter("query_map")
        prefix = tuple(params or [])
        rows = []
        for key, value in sorted(self.storage.get((module, storage_function), {}).items(), key=repr):
            if key[: len(prefix)] != prefix:
                continue
            rest = key[len(prefix) :]
            rows.append((rest[0] if len(rest) == 1 else rest, value))
        return rows

    async def query_batch(
        self, module: str, storage_function: str, param_sets: list[list], block_hash: str | None = None
    ) -> list[Any]:
        await self._enter("query_batch")
        return [self.get_storage(module, storage_function, params) for params in param_sets]

    async def runtime_call(self, api: str, method: str, params: list, block_hash: str | None = None) -> Any:
        await self._enter("runtime_call")
        value = self.runtime_calls.get((api, method))
        return value(params) if callable(value) else value

    async def constant(self, module: str, name: str) -> Any:
        await self._enter("constant")
        return self.constants.get((module, name))

    async def decode_scale(self, type_string: str, data: Any) -> Any:
        await self._enter("decode_scale")
        return data

    async def blocks(self, *, finalized: bool = False) -> AsyncIterator[dict]:
        await self._enter("blocks")
        while True:
            self.advance()
            yield {"header": {"number": self.block, "parentHash": f"0x{self.block - 1:064x}"}}

    async def events(self, block_hash: str | None = None) -> list[dict]:
        await self._enter("events")
        return []

    # -- calls and fees -------------------------------------------------------------------------

    async def compose(self, call: Any) -> ComposedCall:
        """Check the params against the generated builder's declared widths, like metadata would."""
        await self._enter("compose")
        module, function, params = call
        builder = getattr(getattr(generated_calls, module), function)
        declared = inspect.signature(builder).parameters
        unknown = set(params) - set(declared)
        if unknown:
            raise ValueError(f"{module}.{function}: unknown parameters {sorted(unknown)}")
        for name, value in params.items():
            bits = _UINT_BITS.get(str(declared[name].annotation).strip("'\""))
            if bits is not None and not (isinstance(value, int) and 0 <= value < 2**bits):
                raise ValueError(f"{module}.{function}: {name}={value!r} does not fit in u{bits}")
        return ComposedCall(module, function, dict(params))

    async def estimate_fee(self, call: Any, keypair: Any) -> Balance:
        await self._enter("estimate_fee")
        return Balance.from_rao(125_000)

    async def estimate_weight(self, call: Any, keypair: Any) -> dict:
        await self._enter("estimate_weight")
        return {"ref_time": 1_000_000, "proof_size": 1_000}

    async def account_next_index(self, address: str) -> int:
        await self._enter("account_next_index")
        return self._nonces.get(address, 0)

    # -- writes ---------------------------------------------------------------------------------

    async def mev_next_key(self) -> bytes | None:
        await self._enter("mev_next_key")
        return None

    async def sign_extrinsic(self, call: Any, keypair: Any, *, nonce: int, period: int) -> tuple[bytes, str]:
        await self._enter("sign_extrinsic")
        payload = call.data + nonce.to_bytes(8, "little")
        return bytes(keypair.sign(payload)), f"0x{abs(hash(payload)):064x}"

    async def find_extrinsic(self, extrinsic_hash: str, block_hash: str) -> ExtrinsicResult | None:
        await self._enter("find_extrinsic")
        return None

    async def prepare(self, call: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the fake does not prepare unsigned extrinsics")

    async def submit_signature(self, unsigned: Any, signature: Any, **kwargs: Any) -> ExtrinsicResult:
        raise NotImplementedError("the fake does not accept detached signatures")

    async def submit(
        self,
        call: ComposedCall,
        keypair: Any,
        *,
        nonce: int | None = None,
        period: int | None = 128,
        wait_for_inclusion: bool = True,
        wait_for_finalization: bool = True,
    ) -> ExtrinsicResult:
        """Sign (really, with the keypair), include in a new block, dispatch, report like the RPC backend."""
        try:
            await self._enter("submit", kind="submit")
        except _SubmitRejected as rejected:
            return ExtrinsicResult(success=False, message=rejected.error.message, error=rejected.error)
        signer = keypair.ss58_address
        used = self._nonces.get(signer, 0) if nonce is None else nonce
        keypair.sign(call.data)  # a public-only key fails here, as it would when signing for real
        self.submissions.append(
            Submission(call, signer, used, wait_for_inclusion, wait_for_finalization, period)
        )
        if self._rejections:
            return _failure(self._rejections.popleft(), self.advance())
        self._nonces[signer] = used + 1
        included = self.advance()
        dispatcher = self.dispatchers.get((call.module, call.function))
        error = dispatcher(self, call, signer) if dispatcher else None
        if error:
            return _failure(error, included)
        if not (wait_for_inclusion or wait_for_finalization):
            return ExtrinsicResult(success=True, message="Submitted (not waiting).")
        return ExtrinsicResult(
            success=True,
            message="Success",
            block_hash=f"0x{included:064x}",
            extrinsic_id=f"{included}-0001",
            fee=Balance.from_rao(125_000),
        )

    async def submit_signed(self, extrinsic: Any, keypair: Any, **kwargs: Any) -> ExtrinsicResult:
        return await self.submit(extrinsic, keypair, **kwargs)

    def multisig_account(self, signatories: list[str], threshold: int) -> Any:
        raise NotImplementedError("the fake has no multisig support")

    async def submit_multisig(self, call: Any, keypair: Any, multisig_account: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the fake has no multisig support")


class _SubmitRejected(Exception):
    def __init__(self, error: ChainError) -> None:
        super().__init__(error.message)
        self.error = error


def _failure(name: str, included: int) -> ExtrinsicResult:
    """A dispatch failure as ``RpcSubstrate`` reports it: docs text as message, the name on the error."""
    text = _DOCS_BY_NAME.get(name) or name
    return ExtrinsicResult(
        success=False,
        message=text,
        block_hash=f"0x{included:064x}",
        extrinsic_id=f"{included}-0001",
        error=ChainError(text, name),
    )


def serve_prometheus(chain: FakeSubstrate, call: ComposedCall, signer: str) -> str | None:
    """``SubtensorModule::serve_prometheus`` with the pallet's checks, in the pallet's order."""
    p = call.params
    netuid, ip, ip_type, port = p["netuid"], p["ip"], p["ip_type"], p["port"]
    if ip_type not in (4, 6):
        return "InvalidIpType"
    if ip == 0 or (ip_type == 4 and (ip >= U32_MAX or ip == 0x7F000001)) or (ip_type == 6 and ip == 1):
        return "InvalidIpAddress"
    registered = any(
        key[0] == signer and value
        for key, value in chain.storage.get(("SubtensorModule", "IsNetworkMember"), {}).items()
    )
    if not registered:
        return "HotKeyNotRegisteredInNetwork"
    previous = chain.get_storage("SubtensorModule", "Prometheus", [netuid, signer])
    limit = int(chain.get_storage("SubtensorModule", "ServingRateLimit", [netuid]) or 0)
    last = int(previous["block"]) if previous else 0
    if limit and last and chain.block - last < limit:
        return "ServingRateLimitExceeded"
    if port == 0:
        return "InvalidPort"
    chain.set_storage(
        "SubtensorModule",
        "Prometheus",
        [netuid, signer],
        {"block": chain.block, "version": p["version"], "ip": ip, "port": port, "ip_type": ip_type},
    )
    return None


# -- the subnet's neurons, as the chain answers the reads of the chain collector ------------------
#
# Shapes: subtensor's ``Metagraph`` runtime struct (pallets/subtensor/src/rpc_info/metagraph.rs in
# opentensor/subtensor: Compact integers, ``AccountId`` columns, ``Vec<AxonInfo>``, PerU16 scores as
# raw u16) after bittensor 11's transport has decoded it: AccountIds as ss58 strings, Compacts as
# ints, structs as dicts keyed by field name, ``Vec<Compact<u8>>`` names as lists of ints (what
# ``bittensor.metagraph._build`` and ``reads.base.utf8_text`` expect). ``ValidatorTrust`` is a
# ``Vec<u16>`` storage value per netuid, ``Prometheus`` a double map (netuid, hotkey) ->
# ``PrometheusInfo``, ``OwnedHotkeys`` a map coldkey -> ``Vec<AccountId>``.

AXON_FIELDS = ("block", "version", "ip", "port", "ip_type", "protocol", "placeholder1", "placeholder2")


@dataclass
class FakeNeuron:
    """One uid's chain state in raw units (rao, raw u16 scores, blocks)."""

    hotkey: str
    coldkey: str
    stake_rao: int = 0
    rank: int = 0
    trust: int = 0
    consensus: int = 0
    incentive: int = 0
    dividends: int = 0
    validator_trust: int = 0
    pruning_score: int = 0
    emission_rao: int = 0
    last_update: int = 0
    registered_at: int = 0
    active: bool = True
    validator_permit: bool = False
    axon: dict | None = None  # AxonInfo fields; None = nothing served (all zero on chain)
    prometheus: dict | None = None  # PrometheusInfo fields; None = no record


def metagraph_record(chain: FakeSubstrate, netuid: int, neurons: list[FakeNeuron], **subnet: Any) -> dict:
    """``SubnetInfoRuntimeApi.get_metagraph(netuid)`` as the transport decodes it, at ``chain.block``."""
    zero_fields = (
        "subnet_emission alpha_out alpha_out_emission alpha_in_emission tao_in_emission "
        "pending_alpha_emission pending_root_emission subnet_volume rho kappa min_allowed_weights "
        "max_weights_limit weights_version weights_rate_limit activity_cutoff max_validators burn "
        "difficulty min_difficulty max_difficulty min_burn max_burn adjustment_alpha adjustment_interval "
        "target_regs_per_interval max_regs_per_block serving_rate_limit commit_reveal_period alpha_high "
        "alpha_low bonds_moving_avg"
    ).split()
    record: dict[str, Any] = {
        **dict.fromkeys(zero_fields, 0),
        "netuid": netuid,
        "name": list(subnet.get("name", "compute").encode()),
        "symbol": list("\u03ba".encode()),
        "identity": None,
        "network_registered_at": 1,
        "owner_hotkey": neurons[0].hotkey if neurons else "",
        "owner_coldkey": neurons[0].coldkey if neurons else "",
        "block": chain.block,
        "tempo": subnet.get("tempo", 360),
        "last_step": chain.block - chain.block % 360,
        "blocks_since_last_step": chain.block % 360,
        "immunity_period": subnet.get("immunity_period", 5000),
        "num_uids": len(neurons),
        "max_uids": 256,
        "moving_price": {"bits": 2**32},
        "alpha_in": 10**18,
        "tao_in": 10**17,
        "registration_allowed": True,
        "pow_registration_allowed": False,
        "commit_reveal_weights_enabled": True,
        "liquid_alpha_enabled": False,
    }
    columns = {
        "hotkeys": [n.hotkey for n in neurons],
        "coldkeys": [n.coldkey for n in neurons],
        "identities": [None for _ in neurons],
        "axons": [_axon_record(n.axon) for n in neurons],
        "active": [n.active for n in neurons],
        "validator_permit": [n.validator_permit for n in neurons],
        "pruning_score": [n.pruning_score for n in neurons],
        "last_update": [n.last_update for n in neurons],
        "emission": [n.emission_rao for n in neurons],
        "dividends": [n.dividends for n in neurons],
        "incentives": [n.incentive for n in neurons],
        "consensus": [n.consensus for n in neurons],
        "trust": [n.trust for n in neurons],
        "rank": [n.rank for n in neurons],
        "block_at_registration": [n.registered_at for n in neurons],
        "alpha_stake": [n.stake_rao for n in neurons],
        "tao_stake": [0 for _ in neurons],
        "total_stake": [n.stake_rao for n in neurons],
        "tao_dividends_per_hotkey": [(n.hotkey, 0) for n in neurons],
        "alpha_dividends_per_hotkey": [(n.hotkey, 0) for n in neurons],
    }
    return {**record, **columns}


def _axon_record(axon: Any) -> Any:
    """An ``AxonInfo`` with every field (the chain stores zeros when nothing is served).

    Anything but a dict or None is passed through as is, for tests of malformed records.
    """
    if axon is None or isinstance(axon, dict):
        return {**dict.fromkeys(AXON_FIELDS, 0), **(axon or {})}
    return axon


def install_subnet(
    chain: FakeSubstrate, netuid: int, neurons: list[FakeNeuron], *, scale: bool = True, **subnet: Any
) -> None:
    """Make the fake answer the subnet's reads for ``neurons`` (uid = list index), as the pallet stores them.

    With ``scale`` (the default) every answer is SCALE-encoded with subtensor's type layout and
    decoded by bittensor's own codec (:mod:`fakes.subtensor_scale`), so readers get exactly the
    shapes the real transport produces; ``scale=False`` hands the values over as written, for
    tests of records the decoder would never produce. The runtime call is computed when called,
    so a test may change ``neurons`` or ``chain.block`` between reads. Owned hotkeys and
    registrations are written the way the pallet keeps them.
    """
    from fakes.subtensor_scale import SCALE

    def wire(type_id: int, value: Any) -> Any:
        return SCALE.round_trip(type_id, value) if scale else value

    previous = chain.runtime_calls.get(("SubnetInfoRuntimeApi", "get_metagraph"))

    def get_metagraph(params: list) -> Any:
        if params == [netuid]:
            return wire(SCALE.option_metagraph, metagraph_record(chain, netuid, neurons, **subnet))
        return previous(params) if callable(previous) else None

    chain.runtime_calls[("SubnetInfoRuntimeApi", "get_metagraph")] = get_metagraph
    vtrust = [n.validator_trust for n in neurons]
    chain.set_storage("SubtensorModule", "ValidatorTrust", [netuid], wire(SCALE.u16_vec, vtrust))
    chain.storage[("SubtensorModule", "Prometheus")] = {
        key: value
        for key, value in chain.storage.get(("SubtensorModule", "Prometheus"), {}).items()
        if key[0] != netuid
    }
    owned: dict[str, list[str]] = {}
    for uid, neuron in enumerate(neurons):
        chain.register_neuron(netuid, neuron.hotkey, uid)
        owned.setdefault(neuron.coldkey, []).append(neuron.hotkey)
        if neuron.prometheus is not None:
            chain.set_storage(
                "SubtensorModule", "Prometheus", [netuid, neuron.hotkey], dict(neuron.prometheus)
            )
    for coldkey, hotkeys in owned.items():
        known = chain.get_storage("SubtensorModule", "OwnedHotkeys", [coldkey]) or []
        chain.set_storage(
            "SubtensorModule", "OwnedHotkeys", [coldkey], list(dict.fromkeys([*known, *hotkeys]))
        )
