"""Bring the on-chain Prometheus record up to date: read, compare, check, submit, with bounded retries.

One *run* reconciles the record once. It reads ``SubtensorModule.Prometheus(netuid, hotkey)``,
resolves what we want (the version on chain is kept unless one is given: on SN27 it is the
validator neuron's beacon; the port follows the role) and compares version, ip, port and ip_type
**with the chain's values** (the original compared its own version with itself). Only a
differing record, or ``--force``, leads to a ``serve_prometheus`` extrinsic signed by the hotkey,
and never inside the serving rate limit, whoever served last.

Retries: a run is a sequence of *attempts*, each a fresh connection doing the whole
read-compare-submit cycle, so a retry after a lost answer first looks at the chain and does not
serve twice. Only transport failures are retried (connection refused or closed, timeouts, transient
pool rejections such as "priority is too low"), with exponential backoff and full jitter, bounded
by ``max_attempts`` and ``max_time``. A chain rejection (``ServingRateLimitExceeded``,
``InvalidPort``, ...) is final: retrying would fail identically, so it is reported by name.

bittensor is imported lazily, inside the functions that talk to the chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from exporters.registrar.record import (
    NEURON_PORT,
    Cause,
    DesiredRecord,
    DiscoveryError,
    ExitCode,
    LocalCheckError,
    Owner,
    PrometheusRecord,
    Role,
    Target,
    check_locally,
    owner_of,
    serve_cause,
)

log = logging.getLogger("opencompute.registrar")

PALLET = "SubtensorModule"
_PROMETHEUS = (PALLET, "Prometheus")
_UIDS = (PALLET, "Uids")
_SERVING_RATE_LIMIT = (PALLET, "ServingRateLimit")
_VALIDATOR_PERMIT = (PALLET, "ValidatorPermit")
BLOCK_SECONDS = 12.0  # the subnet's target block time, to turn a block wait into a sleep

# Chain error names mapped to our exit codes; anything else is CHAIN_ERROR.
_ERROR_EXIT: dict[str, ExitCode] = {
    "ServingRateLimitExceeded": ExitCode.RATE_LIMITED,
    "InvalidIpAddress": ExitCode.INVALID_IP,
    "InvalidIpType": ExitCode.INVALID_IP_TYPE,
    "InvalidPort": ExitCode.INVALID_PORT,
    "HotKeyNotRegisteredInNetwork": ExitCode.NOT_REGISTERED,
    "HotKeyNotRegisteredInSubNet": ExitCode.NOT_REGISTERED,
    "NotRegistered": ExitCode.NOT_REGISTERED,
}

# Pool and watch outcomes that say "try again", not "this call is wrong". The same pool messages
# bittensor's own executor resubmits on; a dropped or usurped transaction never dispatched.
_TRANSIENT_POOL_TEXT = ("priority is too low", "transaction is outdated", "stale")
_TRANSIENT_POOL_NAMES = frozenset({"Dropped", "Usurped", "Retracted", "FinalityTimeout"})


class Outcome(StrEnum):
    """The bounded ``outcome`` label of ``opencompute_registrar_attempts_total``."""

    SERVED = "served"
    SKIPPED_UNCHANGED = "skipped_unchanged"
    WAITING_RATE_LIMIT = "waiting_rate_limit"  # loop mode: a serve is due once the limit has passed
    NO_RECORD = "no_record"  # nothing on chain to keep the version of, and no --registrar.version
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"
    DISPATCH_ERROR = "dispatch_error"
    TRANSPORT_ERROR = "transport_error"
    ERROR = "error"


@dataclass(frozen=True)
class RunResult:
    """What one run did: outcome, exit code, a sentence for the log, and the record it saw last."""

    outcome: Outcome
    code: ExitCode
    message: str
    attempts: int = 1
    record: PrometheusRecord | None = None
    error_name: str | None = None
    retry_at_block: int | None = None  # WAITING_RATE_LIMIT: the first block a serve is accepted
    retry_after: float | None = None  # ... and about how many seconds from now that is

    @property
    def ok(self) -> bool:
        return self.code == ExitCode.OK


class TransientError(Exception):
    """A failure worth another attempt (the transport, not the call, went wrong)."""


# Socket-level failures: refused/reset/closed connections, timeouts, DNS hiccups, truncated streams.
_TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    TransientError,
    ConnectionError,
    TimeoutError,
    EOFError,
    socket.gaierror,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts and in total time.

    ``delay(n)`` is uniform in ``[0, min(cap, base * 2**(n-1))]`` (AWS "full jitter"): many
    validators restarting together do not hammer an RPC node in lockstep.
    """

    max_attempts: int = 5
    max_time: float = 300.0
    attempt_timeout: float = 120.0
    base: float = 1.0
    cap: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap, self.base * 2 ** (attempt - 1)))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a transport failure worth retrying.

    bittensor 11 surfaces these as ``RpcConnectionError`` (connect, exhausted reconnects), or as a
    nameless ``ChainError`` raised *from* the socket error when a submission loses its connection.
    """
    from bittensor.result import RpcConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (*_TRANSIENT_TYPES, RpcConnectionError)):
            return True
        if type(current).__module__.split(".", 1)[0] == "websockets":
            return True
        current = current.__cause__
    return False


@dataclass
class RegistrarState:
    """What the metrics show; updated after every run, read at scrape time (thread-safe).

    ``last_block`` is the record's block at our last read: a different block at the next read
    that we did not serve means someone else (the neuron) served, counted in ``changes``.
    """

    last_attempt: float | None = None
    last_success: float | None = None
    outcomes: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    serves: dict[str, int] = field(default_factory=lambda: {c.value: 0 for c in Cause})
    changes: dict[str, int] = field(default_factory=lambda: {Owner.NEURON.value: 0, Owner.OTHER.value: 0})
    transport_retries: int = 0
    onchain: PrometheusRecord | None = None
    owner: Owner | None = None
    role: Role | None = None
    up_to_date: bool | None = None
    last_block: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe(
        self,
        record: PrometheusRecord | None,
        desired: DesiredRecord | None,
        neuron_port: int = NEURON_PORT,
        *,
        ours: bool = False,
    ) -> None:
        """Record a read; ``ours`` says a block change at this read is our own serve."""
        with self._lock:
            block = record.block if record is not None else None
            if self.last_block is not None and block is not None and block != self.last_block and not ours:
                by = owner_of(record, desired, neuron_port) if desired is not None else Owner.OTHER
                key = Owner.NEURON.value if by is Owner.NEURON else Owner.OTHER.value
                self.changes[key] += 1
            if block is not None:
                self.last_block = block
            self.onchain = record
            if record is None:
                self.owner = Owner.NONE
            if desired is not None:
                self.up_to_date = record is not None and record.same_endpoint(desired.record)
                self.owner = owner_of(record, desired, neuron_port)

    def served(self, cause: Cause) -> None:
        with self._lock:
            self.serves[cause.value] += 1

    def finish(self, result: RunResult, started: float, finished: float) -> None:
        with self._lock:
            self.last_attempt = started
            self.outcomes[result.outcome.value] = self.outcomes.get(result.outcome.value, 0) + 1
            self.transport_retries += max(0, result.attempts - 1)
            if result.outcome in (Outcome.SERVED, Outcome.SKIPPED_UNCHANGED):
                self.last_success = finished

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "last_attempt": self.last_attempt,
                "last_success": self.last_success,
                "outcomes": dict(self.outcomes),
                "serves": dict(self.serves),
                "changes": dict(self.changes),
                "transport_retries": self.transport_retries,
                "onchain": self.onchain,
                "owner": self.owner,
                "role": self.role,
                "up_to_date": self.up_to_date,
            }


@dataclass
class _Baseline:
    """The record block seen by the first attempt of a run; a later change means we served."""

    seen: bool = False
    block: int | None = None
    cause: Cause | None = None


class Registrar:
    """Reconciles ``Prometheus(netuid, hotkey)`` with the desired record through a bittensor Client.

    Every boundary is injected: ``client_factory`` builds a fresh ``bittensor.Client`` (a real one,
    or one wrapping an in-memory Substrate in tests), ``target`` says what to publish (it may
    rediscover the IP each run; its version and port may be left to the chain and the role), and
    ``sleep``/``clock``/``wall``/``rng`` drive retries.

    ``role`` None detects it from ``ValidatorPermit`` and refuses a miner's hotkey; ``wait_rate_limit``
    (loop mode) turns a serve predicted inside the rate limit into a wait instead of an error.
    """

    def __init__(
        self,
        *,
        signer: Any,
        client_factory: Callable[[], Any],
        target: Callable[[], Target],
        policy: RetryPolicy | None = None,
        role: Role | None = None,
        neuron_port: int = NEURON_PORT,
        wait_rate_limit: bool = False,
        force: bool = False,
        wait_for_finalization: bool = False,
        state: RegistrarState | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.signer = signer
        self.hotkey: str = signer.ss58_address
        self._client_factory = client_factory
        self._target = target
        self.policy = policy or RetryPolicy()
        self.role = role
        self.neuron_port = neuron_port
        self.wait_rate_limit = wait_rate_limit
        self.force = force
        self.wait_for_finalization = wait_for_finalization
        self.state = state or RegistrarState()
        self._sleep = sleep
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()

    # -- one run ---------------------------------------------------------------------------------

    def run_once(self) -> RunResult:
        """Reconcile once, log the result, update the metrics state; never raises."""
        started = self._wall()
        try:
            result = self._run()
        except Exception as exc:  # a bug must not kill the loop; it is logged with its traceback
            log.exception("registrar run failed unexpectedly")
            result = RunResult(Outcome.ERROR, ExitCode.ERROR, f"unexpected error: {exc!r}")
        self.state.finish(result, started, self._wall())
        level = logging.INFO if result.ok else logging.ERROR
        log.log(level, "outcome=%s exit=%d %s", result.outcome.value, int(result.code), result.message)
        return result

    def _run(self) -> RunResult:
        try:
            target = self._target()
            target.precheck()
        except DiscoveryError as exc:
            return RunResult(Outcome.INVALID, ExitCode.IP_DISCOVERY, str(exc), attempts=0)
        except LocalCheckError as exc:
            return RunResult(Outcome.INVALID, exc.code, exc.message, attempts=0)
        return self._with_retries(target)

    def _with_retries(self, target: Target) -> RunResult:
        policy = self.policy
        start = self._clock()
        baseline = _Baseline()
        last_error: BaseException | None = None
        attempt = 0
        while attempt < policy.max_attempts:
            remaining = policy.max_time - (self._clock() - start)
            if remaining <= 0:
                break
            attempt += 1
            try:
                result = self._attempt_sync(target, baseline, min(policy.attempt_timeout, remaining))
            except LocalCheckError as exc:
                outcome = _LOCAL_OUTCOME.get(exc.code, Outcome.INVALID)
                return RunResult(outcome, exc.code, exc.message, attempts=attempt, record=self.state.onchain)
            except Exception as exc:  # noqa: BLE001 - classified below: retry, report or re-raise
                if not is_transient(exc):
                    return self._unexpected(exc, attempt)
                last_error = exc
                log.warning(
                    "attempt %d/%d failed: %s", attempt, policy.max_attempts, _describe_transport(exc)
                )
            else:
                return _with_attempts(result, attempt)
            if attempt >= policy.max_attempts:
                break
            delay = min(policy.delay(attempt, self._rng), policy.max_time - (self._clock() - start))
            if delay <= 0:
                break
            log.info("retrying in %.2fs", delay)
            self._sleep(delay)
        elapsed = self._clock() - start
        return RunResult(
            Outcome.TRANSPORT_ERROR,
            ExitCode.UNREACHABLE,
            f"chain unreachable: gave up after {attempt} attempt(s) in {elapsed:.1f}s "
            f"(limits: {policy.max_attempts} attempts, {policy.max_time:g}s); last error: "
            f"{_describe_transport(last_error)}",
            attempts=attempt,
            record=self.state.onchain,
        )

    def _unexpected(self, exc: BaseException, attempt: int) -> RunResult:
        """A non-transient exception: a chain-side read error (named if possible) or a bug."""
        from bittensor.result import BittensorError, ChainError

        if isinstance(exc, ChainError):
            named = f" {exc.name}" if exc.name else ""
            return RunResult(
                Outcome.DISPATCH_ERROR,
                ExitCode.CHAIN_ERROR,
                f"chain error{named}: {exc.message}",
                attempts=attempt,
                error_name=exc.name,
            )
        if isinstance(exc, BittensorError):
            return RunResult(Outcome.ERROR, ExitCode.ERROR, f"bittensor error: {exc}", attempts=attempt)
        raise exc

    def _attempt_sync(self, target: Target, baseline: _Baseline, timeout: float) -> RunResult:
        async def bounded() -> RunResult:
            try:
                return await asyncio.wait_for(self._attempt(target, baseline), timeout)
            except TimeoutError:
                raise TransientError(f"no answer from the chain within {timeout:.1f}s") from None

        return asyncio.run(bounded())

    async def _attempt(self, target: Target, baseline: _Baseline) -> RunResult:
        client = self._client_factory()
        try:
            await client.connect()
            return await self._reconcile(client, target, baseline)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 5.0)

    async def _reconcile(self, client: Any, target: Target, baseline: _Baseline) -> RunResult:
        import bittensor as bt

        netuid, hotkey = target.netuid, self.hotkey
        uid = await client.query(_UIDS, [netuid, hotkey])
        if uid is None:
            raise LocalCheckError(
                ExitCode.NOT_REGISTERED,
                f"hotkey {hotkey} is not registered on subnet {netuid}; register it first "
                f"(btcli subnets register --netuid {netuid})",
            )
        role = await self._role(client, netuid, int(uid))
        current = PrometheusRecord.from_chain(await client.query(_PROMETHEUS, [netuid, hotkey]))
        if current is None:
            self.state.observe(None, None)
        desired = target.resolve(current, role)
        check_locally(desired)
        landed = baseline.seen and current is not None and current.block != baseline.block
        self.state.observe(current, desired, self.neuron_port, ours=landed)
        if current is not None and current.same_endpoint(desired.record):
            if landed:
                self.state.served(baseline.cause or Cause.FORCED)
                return RunResult(
                    Outcome.SERVED,
                    ExitCode.OK,
                    f"served by an earlier attempt: {current.describe()}",
                    record=current,
                )
            if not self.force:
                return RunResult(
                    Outcome.SKIPPED_UNCHANGED,
                    ExitCode.OK,
                    f"on-chain record already up to date for uid {uid}: {current.describe()}",
                    record=current,
                )
        cause = serve_cause(current, desired, self.neuron_port)
        if not baseline.seen:
            baseline.seen, baseline.block = True, current.block if current else None
        baseline.cause = cause
        waiting = await self._check_rate_limit(client, netuid, current)
        if waiting is not None:
            return waiting
        intent = bt.ServePrometheus(
            netuid=netuid, ip=desired.address, port=desired.port, version=desired.version
        )
        log.info(
            "submitting serve_prometheus for uid %s (%s): %s (was: %s)",
            uid,
            cause.value,
            desired.record.describe(),
            current.describe() if current else "none",
        )
        outcome = await client.execute(
            intent, self.signer, wait_for_inclusion=True, wait_for_finalization=self.wait_for_finalization
        )
        if not outcome.success:
            return _rejected(outcome)
        self.state.served(cause)
        after = PrometheusRecord.from_chain(await client.query(_PROMETHEUS, [netuid, hotkey]))
        self.state.observe(after, desired, self.neuron_port, ours=True)
        where = f" in extrinsic {outcome.extrinsic_id}" if outcome.extrinsic_id else ""
        shown = after.describe() if after else desired.record.describe()
        return RunResult(Outcome.SERVED, ExitCode.OK, f"served{where} ({cause.value}): {shown}", record=after)

    async def _role(self, client: Any, netuid: int, uid: int) -> Role:
        """The explicit role, or the chain's: a validator permit means a validator, else a miner (refused)."""
        role = self.role
        if role is None:
            permits = await client.query(_VALIDATOR_PERMIT, [netuid]) or []
            permitted = 0 <= uid < len(permits) and bool(permits[uid])
            if not permitted:
                raise LocalCheckError(
                    ExitCode.MINER_HOTKEY,
                    f"hotkey {self.hotkey} (uid {uid}) has no validator permit on subnet {netuid}, so it "
                    "is a miner's: SN27 miners never publish this record and nothing in SN27 reads it; "
                    "refusing. Pass --registrar.role=miner to publish the miner exporter's port anyway, "
                    "or --registrar.role=validator if this hotkey runs the validator neuron",
                )
            role = Role.VALIDATOR
        self.state.role = role
        return role

    async def _check_rate_limit(
        self, client: Any, netuid: int, current: PrometheusRecord | None
    ) -> RunResult | None:
        """Predict ServingRateLimitExceeded with the pallet's rule, instead of burning a submission.

        The limit counts from the record's block, whoever served it (the neuron too). Loop mode
        waits it out (a WAITING_RATE_LIMIT result naming the block); a single run fails with exit 20.
        """
        if current is None or not current.block:
            return None
        limit = int(await client.query(_SERVING_RATE_LIMIT, [netuid]) or 0)
        if limit <= 0:
            return None
        now = int(await client.block())
        if now - current.block >= limit:
            return None
        allowed = current.block + limit
        if self.wait_rate_limit:
            return RunResult(
                Outcome.WAITING_RATE_LIMIT,
                ExitCode.OK,
                f"a serve is due but the record was served at block {current.block} and the subnet allows "
                f"one serve every {limit} blocks: waiting until block {allowed} (now {now})",
                record=current,
                retry_at_block=allowed,
                retry_after=(allowed - now) * BLOCK_SECONDS,
            )
        raise LocalCheckError(
            ExitCode.RATE_LIMITED,
            f"ServingRateLimitExceeded: last served at block {current.block}, the subnet allows one "
            f"serve every {limit} blocks; retry at block {allowed} or later (now {now})",
        )

    def next_delay(self, interval: float, result: RunResult | None) -> float:
        """Seconds until the loop's next run: the interval, or sooner when a rate-limit wait ends first."""
        if result is not None and result.retry_after is not None:
            return max(1.0, min(interval, result.retry_after + BLOCK_SECONDS))
        return interval


_LOCAL_OUTCOME: dict[ExitCode, Outcome] = {
    ExitCode.RATE_LIMITED: Outcome.RATE_LIMITED,
    ExitCode.NO_VERSION: Outcome.NO_RECORD,
}


def _with_attempts(result: RunResult, attempts: int) -> RunResult:
    return RunResult(
        result.outcome,
        result.code,
        result.message,
        attempts,
        result.record,
        result.error_name,
        result.retry_at_block,
        result.retry_after,
    )


def _rejected(outcome: Any) -> RunResult:
    """Map a failed ``ExtrinsicResult`` to a final result, or raise for a transient pool rejection."""
    error = outcome.error
    name = getattr(error, "name", None)
    text = outcome.message or (str(error) if error else "extrinsic failed")
    if name in _TRANSIENT_POOL_NAMES or (
        name is None and any(needle in text.lower() for needle in _TRANSIENT_POOL_TEXT)
    ):
        raise TransientError(f"transaction pool: {name or text}")
    code = _ERROR_EXIT.get(name or "")
    if code is None and getattr(getattr(error, "code", None), "value", None) == "rate_limited":
        code = ExitCode.RATE_LIMITED
    code = code or ExitCode.CHAIN_ERROR
    kind = Outcome.RATE_LIMITED if code == ExitCode.RATE_LIMITED else Outcome.DISPATCH_ERROR
    return RunResult(
        kind,
        code,
        f"chain rejected serve_prometheus with {name or 'an unnamed error'}: {text}",
        error_name=name,
    )


def _describe_transport(exc: BaseException | None) -> str:
    if exc is None:
        return "none"
    text = str(exc).strip() or type(exc).__name__
    cause = exc.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({type(cause).__name__}: {cause})"
    return text


async def build_call(desired: DesiredRecord) -> Any:
    """The exact ``Call(module, function, params)`` that a submission composes, built offline.

    Uses bittensor's own ``ServePrometheus.build`` with a composer that returns the generated call
    unencoded (composing SCALE needs the live runtime's metadata).
    """
    import bittensor as bt

    class _Uncomposed:
        async def compose(self, call: Any) -> Any:
            return call

    intent = bt.ServePrometheus(
        netuid=desired.netuid, ip=desired.address, port=desired.port, version=desired.version
    )
    return await intent.build(_Uncomposed(), None)
