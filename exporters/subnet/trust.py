"""Who to believe: the current validator set, and which runs verify.

The original trusts a validator run when its v1 signature verifies and the hotkey's subnet
stake is strictly above ``validator_permit_stake`` (1.0e4; ``get_valid_validator_hotkeys`` has
no permit check). That is :attr:`ValidatorSet.validators`; the strict reading also requires a
validator permit (:attr:`ValidatorSet.strict_validators`). The rule runs against a :class:`ValidatorSource`
(the chain through bittensor 11 in production, an in-memory table in tests), with two fallbacks
when the chain cannot be reached: the last good metagraph kept on disk, then a static allowlist.
Every run then goes through ``exporters.core.signing.verify_run``; a valid fresh v2 envelope
supplies the payload, a run with only a valid v1 signature counts with its top-level keys and is
reported as weakly signed.

The miner exporter applies the same rule to find its own allocation
(:mod:`exporters.miner.allocation`); both build their resolver from the same flags
(:func:`trust_flags`, :func:`build_resolver`, :func:`chain_source`), so they cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from exporters.core.config import Flag, existing_file, positive_duration
from exporters.core.state.base import RunRecord
from exporters.subnet.views import VerifiedRun, is_ss58

log = logging.getLogger(__name__)

TRUST_SOURCES = ("chain", "cache", "allowlist", "none")
CACHE_FILE = "metagraph-{netuid}.json"
CACHE_FORMAT = 1


class ChainUnavailable(Exception):
    """The validator source could not answer (network, timeout, decode error)."""


class NeuronInfo(NamedTuple):
    """What trust needs about one registered hotkey."""

    uid: int
    permit: bool
    stake: float  # total stake in the subnet's units (alpha), as the original compares it


@dataclass(frozen=True)
class ChainState:
    """Registered hotkeys of one subnet at one block."""

    netuid: int
    neurons: Mapping[str, NeuronInfo]
    block: int = 0
    fetched_at: float = 0.0


class ValidatorSource(Protocol):
    """Anything that can list a subnet's neurons with permit and stake."""

    def fetch(self, netuid: int) -> ChainState:
        """The current neurons; raise :class:`ChainUnavailable` when the chain cannot be read."""
        ...


@dataclass
class StaticValidatorSource:
    """A fixed neuron table (the demo's simulated subnet, or tests); ``fail`` simulates an outage."""

    state: ChainState
    fail: bool = False
    calls: int = 0
    clock: Callable[[], float] = time.time

    def fetch(self, netuid: int) -> ChainState:
        self.calls += 1
        if self.fail:
            raise ChainUnavailable("static source marked unavailable")
        return ChainState(netuid, self.state.neurons, self.state.block, self.clock())


class BittensorChainSource:
    """Reads the metagraph through bittensor 11 (``subnets.metagraph(netuid, commitments=False)``).

    One runtime-API call (``SubnetInfoRuntimeApi.get_metagraph``) per fetch, instead of the
    original's one ``neuron_for_uid`` RPC per permitted uid. ``substrate`` lets tests drive the
    real SDK code path with an in-memory implementation of ``bittensor.Substrate``.
    bittensor is imported on first use, so ``--help`` stays fast.
    """

    def __init__(self, network: str = "finney", endpoint: str | None = None, substrate: Any = None) -> None:
        self._target = endpoint or network
        self._substrate = substrate
        self._client: Any = None

    def _connect(self) -> Any:
        if self._client is None:
            import bittensor as bt  # lazy: 0.7 s import

            self._client = bt.Subtensor(self._target, substrate=self._substrate)
        return self._client

    def fetch(self, netuid: int) -> ChainState:
        try:
            graph = self._connect().subnets.metagraph(netuid, commitments=False)
        except Exception as exc:
            self._reset()
            raise ChainUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if graph is None:
            raise ChainUnavailable(f"subnet {netuid} does not exist on {self._target}")
        neurons = {
            str(n.hotkey): NeuronInfo(int(n.uid), bool(n.validator_permit), n.total_stake.rao / 1e9)
            for n in graph.neurons
        }
        return ChainState(netuid, neurons, int(graph.block), time.time())

    def _reset(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                log.debug("closing the subtensor client failed", exc_info=True)


class MetagraphCache:
    """The last good :class:`ChainState`, as JSON in the state dir (written atomically)."""

    def __init__(self, state_dir: str | os.PathLike[str] | None) -> None:
        self.dir = Path(state_dir) if state_dir else None
        self._warned = False

    def path(self, netuid: int) -> Path | None:
        return self.dir / CACHE_FILE.format(netuid=netuid) if self.dir else None

    def save(self, state: ChainState) -> bool:
        path = self.path(state.netuid)
        if path is None:
            return False
        body = {
            "format": CACHE_FORMAT,
            "netuid": state.netuid,
            "block": state.block,
            "fetched_at": state.fetched_at,
            "neurons": {hk: [n.uid, n.permit, n.stake] for hk, n in state.neurons.items()},
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".metagraph-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(body, fh)
            os.replace(tmp, path)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot write the metagraph cache %s: %s", path, exc)
                self._warned = True
            return False
        return True

    def load(self, netuid: int) -> ChainState | None:
        path = self.path(netuid)
        if path is None or not path.exists():
            return None
        try:
            body = json.loads(path.read_text())
            if body.get("format") != CACHE_FORMAT or body.get("netuid") != netuid:
                raise ValueError("format or netuid mismatch")
            neurons = {
                str(hk): NeuronInfo(int(v[0]), bool(v[1]), float(v[2])) for hk, v in body["neurons"].items()
            }
            return ChainState(netuid, neurons, int(body.get("block", 0)), float(body["fetched_at"]))
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            log.warning("ignoring unreadable metagraph cache %s: %s", path, exc)
            return None


def load_allowlist(path: str | os.PathLike[str] | None) -> frozenset[str]:
    """Validator hotkeys from a file: one ss58 per line, ``#`` comments; bad lines logged."""
    if not path:
        return frozenset()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        log.warning("cannot read the validator allowlist %s: %s", path, exc)
        return frozenset()
    out = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if is_ss58(entry):
            out.add(entry)
        else:
            log.warning("validator allowlist %s line %d is not an ss58 address; ignored", path, number)
    return frozenset(out)


@dataclass(frozen=True)
class ValidatorSet:
    """Trusted validator hotkeys, where they came from, and the registered hotkeys (for uids).

    ``validators`` follows the original (stake above the threshold, no permit). ``uids`` is None
    when registrations are unknown (allowlist or nothing); so are ``stakes`` (trusted validator
    -> stake), which readers use to rank validators, e.g. several claimants, and ``permits``
    (registered hotkeys holding a validator permit).
    """

    source: str
    validators: frozenset[str]
    uids: Mapping[str, int] | None
    fetched_at: float | None = None
    block: int = 0
    stakes: Mapping[str, float] | None = None
    permits: frozenset[str] | None = None

    @property
    def strict_validators(self) -> frozenset[str]:
        """The strict reading's validators: the original's set, less hotkeys without a permit."""
        return self.validators if self.permits is None else self.validators & self.permits


def _call_with_timeout(func: Callable[[], ChainState], timeout: float) -> tuple[threading.Thread, list[Any]]:
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(func())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the box
            box.append(exc)

    thread = threading.Thread(target=target, name="chain-fetch", daemon=True)
    thread.start()
    thread.join(timeout)
    return thread, box


def validators_from(state: ChainState, min_stake: float, *, require_permit: bool = False) -> frozenset[str]:
    """Hotkeys whose stake is strictly above ``min_stake``, as the original's
    ``metagraph.total_stake[uid] > validator_permit_stake`` (1.0e4); it checks no permit.
    ``require_permit`` also demands a validator permit (the strict reading)."""
    return frozenset(
        hk for hk, n in state.neurons.items() if n.stake > min_stake and (n.permit or not require_permit)
    )


@dataclass
class ValidatorResolver:
    """Chain first; when it fails, the last good metagraph on disk; then the allowlist."""

    source: ValidatorSource | None
    cache: MetagraphCache
    allowlist_path: str | None = None
    min_stake: float = 1.0e4
    chain_timeout: float = 30.0
    _memory: ChainState | None = field(default=None, repr=False)
    _pending: threading.Thread | None = field(default=None, repr=False)

    def resolve(self, netuid: int) -> ValidatorSet:
        state, origin = self._chain_state(netuid)
        if state is not None:
            validators = validators_from(state, self.min_stake)
            return ValidatorSet(
                origin,
                validators,
                {hk: n.uid for hk, n in state.neurons.items()},
                state.fetched_at,
                state.block,
                {hk: state.neurons[hk].stake for hk in validators},
                frozenset(hk for hk, n in state.neurons.items() if n.permit),
            )
        allow = load_allowlist(self.allowlist_path)
        if allow:
            return ValidatorSet("allowlist", allow, None)
        return ValidatorSet("none", frozenset(), None)

    def _fetch(self, netuid: int) -> ChainState:
        """The source's answer within ``chain_timeout``; a hung read never blocks the refresh.

        A read that hangs keeps its thread; until it ends, later refreshes go straight to the
        fallbacks instead of stacking more hung reads.
        """
        assert self.source is not None
        if self._pending is not None and self._pending.is_alive():
            raise ChainUnavailable("a previous chain read is still hanging")
        thread, box = _call_with_timeout(lambda: self.source.fetch(netuid), self.chain_timeout)
        if thread.is_alive():
            self._pending = thread
            raise ChainUnavailable(f"no answer from the chain within {self.chain_timeout:g}s")
        result = box[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def _chain_state(self, netuid: int) -> tuple[ChainState | None, str]:
        if self.source is not None:
            try:
                state = self._fetch(netuid)
            except Exception as exc:  # noqa: BLE001 - ChainUnavailable or a source bug: fall back
                log.warning("validator set: chain unavailable, falling back: %s", exc)
            else:
                self._memory = state
                self.cache.save(state)
                return state, "chain"
        if self._memory is not None and self._memory.netuid == netuid:
            return self._memory, "cache"
        cached = self.cache.load(netuid)
        if cached is not None:
            self._memory = cached
            return cached, "cache"
        return None, "none"


# --- configuration (shared by every exporter that judges validator runs) -------------------

DEFAULT_MIN_STAKE = 1.0e4  # the original's validator_permit_stake
DEFAULT_CHAIN_TIMEOUT = 30.0
DEFAULT_MAX_RUN_AGE = 86400.0


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(f"expected a number >= 0, got {text!r}")
    return value


def trust_flags(prefix: str, default_state_dir: str) -> list[Flag]:
    """The validator-trust flags: ``--subtensor.*`` and ``--<prefix>.{chain-timeout, max-run-age,
    validator-min-stake, validator-allowlist, state-dir}``.

    One definition for every exporter that applies the trust rule (the network exporter with
    prefix ``network``, the miner's allocation check with ``miner``), so they cannot drift apart.
    :func:`build_resolver` and :func:`chain_source` read the values back.
    """
    return [
        Flag(
            "subtensor.network",
            "Chain to read the validator set from: finney, test, local, a ws(s):// URL, or none "
            "(use the cached metagraph / allowlist only).",
            default="finney",
        ),
        Flag(
            "subtensor.chain-endpoint",
            "Explicit chain endpoint (ws:// or wss://); overrides --subtensor.network.",
            default=None,
            metavar="URL",
        ),
        Flag(
            f"{prefix}.chain-timeout",
            "Give up on a metagraph read after this long and use the cached metagraph instead.",
            default=DEFAULT_CHAIN_TIMEOUT,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            f"{prefix}.max-run-age",
            "Strict reading only: ignore runs whose signed time (v2) or last update (v1) is older "
            "than this (the network's own reading has no age rule).",
            default=DEFAULT_MAX_RUN_AGE,
            convert=positive_duration,
            metavar="DURATION",
        ),
        Flag(
            f"{prefix}.validator-min-stake",
            "A validator hotkey is trusted when its stake is strictly above this (the original's "
            "validator_permit_stake; no permit needed, the strict reading also requires one).",
            default=DEFAULT_MIN_STAKE,
            convert=_non_negative_float,
            metavar="ALPHA",
        ),
        Flag(
            f"{prefix}.validator-allowlist",
            "File of trusted validator hotkeys (one ss58 per line), used when neither the chain nor "
            "a cached metagraph is available.",
            default=None,
            convert=existing_file,
            metavar="FILE",
        ),
        Flag(
            f"{prefix}.state-dir",
            "Directory for the last good metagraph (used when the chain is unreachable).",
            default=default_state_dir,
            metavar="DIR",
        ),
    ]


def chain_source(values: Mapping[str, Any]) -> BittensorChainSource | None:
    """The bittensor chain source from the flags, or None for ``--subtensor.network none``."""
    network = (values.get("subtensor_network") or "finney").strip()
    endpoint = values.get("subtensor_chain_endpoint")
    if not endpoint and network.lower() in {"none", "off", ""}:
        return None
    return BittensorChainSource(network, endpoint)


def build_resolver(
    values: Mapping[str, Any], prefix: str, source: ValidatorSource | None
) -> ValidatorResolver:
    """The resolver configured by :func:`trust_flags` ``(prefix)``; ``source`` None = no chain."""
    state_dir = values.get(f"{prefix}_state_dir")
    min_stake = values.get(f"{prefix}_validator_min_stake")
    return ValidatorResolver(
        source,
        MetagraphCache(os.path.expanduser(state_dir) if state_dir else None),
        allowlist_path=values.get(f"{prefix}_validator_allowlist"),
        min_stake=float(DEFAULT_MIN_STAKE if min_stake is None else min_stake),
        chain_timeout=float(values.get(f"{prefix}_chain_timeout") or DEFAULT_CHAIN_TIMEOUT),
    )


# --- run verification --------------------------------------------------------------------

_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")


def bounded_reason(reason: Any) -> str:
    """A verifier reason safe for a label (anything unexpected becomes ``invalid``)."""
    return reason if isinstance(reason, str) and _REASON.fullmatch(reason) else "invalid"


@dataclass
class VerificationResult:
    """The runs of one role that passed, and why the others did not."""

    accepted: list[VerifiedRun] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # run_id -> reason
    signers: dict[str, float] = field(default_factory=dict)  # verified hotkey -> newest timestamp


Verifier = Callable[..., Any]


def _default_verifier() -> Verifier:
    from exporters.core.signing import verify_run

    return verify_run


def verify_runs(
    records: Iterable[RunRecord],
    *,
    role: str,
    netuid: int,
    entity_project: str,
    now: float,
    max_age: float,
    trusted: frozenset[str] | None = None,
    registered: Mapping[str, int] | None = None,
    last_seq: dict[str, int] | None = None,
    verifier: Verifier | None = None,
    memo: dict[str, tuple[Any, Any]] | None = None,
) -> VerificationResult:
    """Verify every run of ``role``; keep only fresh ones from trusted signers.

    ``trusted`` None accepts any verified signer (miner runs); for validator runs it is the
    current validator set. With ``registered`` (hotkey -> uid), a run whose claimed hotkey is not
    registered is rejected as ``not_registered`` before any signature work: it could not be used
    whether or not it verifies. ``last_seq`` (hotkey -> highest v2 sequence seen, updated in place
    by the verifier) rejects an older envelope replayed over a newer one. Age is judged here
    rather than by the verifier so that a stale signer's last update time is still known.

    ``memo`` (run id -> (config object, verdict), kept by the caller) reuses a *valid* verdict
    while a store hands back the very same config object (it does for an unchanged config): the
    verdict of identical content cannot change with time (age is judged here, a future
    ``signed_at`` only becomes acceptable) nor with ``last_seq`` (its seq is what raised it).
    Rejections are always re-checked.
    """
    from exporters.core.signing import Outcome

    verify = verifier or _default_verifier()
    result = VerificationResult()
    for record in records:
        if registered is not None and _claimed_hotkey(record) not in registered:
            result.rejected[str(record.run_id)] = "not_registered"
            continue
        known = memo.get(record.run_id) if memo is not None else None
        if known is not None and known[0] is record.config:
            check = known[1]
        else:
            try:
                check = verify(
                    record,
                    entity_project=entity_project,
                    netuid=netuid,
                    role=role,
                    now=now,
                    max_age=None,
                    last_seq=last_seq,
                )
            except Exception as exc:  # noqa: BLE001 - a verifier bug must not sink the refresh
                log.warning("verifying run %r raised %s; rejected", record.run_id, type(exc).__name__)
                result.rejected[str(record.run_id)] = "verify_error"
                continue
            if memo is not None and check.outcome != Outcome.REJECTED and isinstance(record.run_id, str):
                memo[record.run_id] = (record.config, check)
        if check.outcome == Outcome.REJECTED:
            result.rejected[record.run_id] = bounded_reason(check.reason)
            continue
        run = verified_run(record, role, check)
        if run is None:
            result.rejected[record.run_id] = "non_json"
            continue
        result.signers[run.hotkey] = max(run.timestamp, result.signers.get(run.hotkey, run.timestamp))
        if run.timestamp and now - run.timestamp > max_age:
            result.rejected[record.run_id] = "stale"
        elif trusted is not None and run.hotkey not in trusted:
            result.rejected[record.run_id] = "untrusted_validator"
        else:
            result.accepted.append(run)
    return result


def _claimed_hotkey(record: RunRecord) -> str | None:
    """The hotkey a run says it is from (unverified): the envelope's, else the top-level one.

    None unless it is a string: anyone can write a run, and an unhashable "hotkey" (a list, an
    object) would make the registration lookup raise.
    """
    from exporters.core.signing import ENVELOPE_KEY

    config = record.config if isinstance(record.config, dict) else {}
    envelope = config.get(ENVELOPE_KEY)
    claimed = envelope.get("hotkey") if isinstance(envelope, dict) else None
    if not isinstance(claimed, str):
        claimed = config.get("hotkey")
    return claimed if isinstance(claimed, str) else None


def verified_run(record: RunRecord, role: str, check: Any) -> VerifiedRun | None:
    """The views' form of a run whose signature check passed (None when it carries no payload)."""
    from exporters.core.signing import Outcome

    v2 = check.outcome == Outcome.VALID_V2
    payload = check.payload
    if not isinstance(payload, Mapping) or not isinstance(check.hotkey, str):
        return None
    stamp = check.signed_at if v2 and check.signed_at is not None else record.updated_at
    return VerifiedRun(
        run_id=record.run_id,
        role=role,
        hotkey=check.hotkey,
        payload=payload,
        signature="v2" if v2 else "v1_only",
        timestamp=float(stamp or 0.0),
        state=record.state if isinstance(record.state, str) else "",
    )
