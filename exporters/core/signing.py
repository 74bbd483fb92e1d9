"""Signed run state: the original v1 run-id signature and our v2 content envelope.

Why two schemes. The live network (the original SN27 code) signs only the WandB run id:
``hotkey.sign(sha256(run_id.encode()).digest())``, stored as bare lowercase hex in
``config["signature"]``. That proves "this hotkey signed this run id once" and nothing about
the config, so anyone able to write to the run can change ``stats`` or ``allocated_hotkeys``
and the signature stays valid. We keep v1 byte-for-byte (so the original accepts what we write
and we can read what it writes) and add v2, stored under ``config["opencompute"]``::

    {"version": 2, "hotkey": "5F...", "role": "validator", "netuid": 27, "mode": "envelope",
     "seq": 41, "signed_at": 1718000000.5, "payload": {...}, "signature": "ab12..."}

The v2 signature is an sr25519 signature by the hotkey over the canonical encoding of::

    {"domain": "opencompute/run-config/v2", "entity_project": "neuralinternet/opencompute",
     "netuid": 27, "run_id": "abcd1234", "role": "validator", "hotkey": "5F...",
     "mode": "envelope", "payload": {...}, "seq": 41, "signed_at": 1718000000.5}

``mode`` says whether the publisher also wrote the payload keys at the top level of the config
(``full``, for operators replacing the original publisher). Only then must top-level copies
equal the signed payload; in ``envelope`` mode the run may be shared with the original, whose
own top-level keys are none of our business.

Canonical encoding: compact JSON, keys sorted, UTF-8, as written by ``orjson`` with
``OPT_SORT_KEYS`` (shortest round-trip floats). The signer first rewrites integral floats as
integers (``1.0`` -> ``1``) and refuses non-finite numbers and integers beyond +-2**53, so a
payload survives a round trip through WandB's Go backend (which holds numbers as float64)
unchanged. The verifier retries once with the same normalisation if the first check fails.

Binding the domain tag, entity/project, netuid, run id, role and hotkey stops cross-project,
cross-network and cross-role replay; ``seq`` (strictly increasing per hotkey, persisted by
the publisher) and ``signed_at`` let readers reject replays and stale state.

Verification never raises: every input maps to a :class:`Verification` whose ``reason`` is
one of :data:`REJECT_REASONS` (a bounded label value).
"""

from __future__ import annotations

import enum
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:  # pragma: no cover
    from bittensor_core import Keypair

    from exporters.core.state.base import RunRecord

ENVELOPE_KEY = "opencompute"
ENVELOPE_VERSION = 2
MODES = ("envelope", "full")
DOMAIN = "opencompute/run-config/v2"
DEFAULT_MAX_BYTES = 512 * 1024  # a full validator stats payload is ~50-80 KB
DEFAULT_MAX_FUTURE_SKEW = 300.0  # seconds a signed_at may lie ahead of the reader's clock
_MAX_SAFE_INT = 2**53
_SIG_HEX_LEN = 128  # 64-byte sr25519 signature

REJECT_REASONS: tuple[str, ...] = (
    "missing_fields",  # no signature at all, or a malformed/unknown envelope
    "bad_hex",  # signature is not 64 bytes of hex
    "bad_ss58",  # hotkey is not a valid ss58 address
    "wrong_signature",  # signature does not verify for this hotkey
    "tampered",  # signed by this hotkey, but content or identity changed after signing
    "stale",  # signed_at older than max_age (or implausibly far in the future)
    "replayed_seq",  # seq lower than one already seen for this hotkey
    "wrong_role",  # run declares a different role than the one read
    "wrong_netuid",  # run declares a different netuid than the one read
    "oversized",  # signed payload larger than max_bytes
    "non_json",  # config/payload is not a JSON object of JSON values
)


class Outcome(enum.Enum):
    """How far a run's config can be trusted."""

    VALID_V2 = "v2"  # content, identity, role, netuid, seq and time are signed
    VALID_V1_ONLY = "v1_only"  # only "hotkey signed this run id" (the original scheme)
    REJECTED = "rejected"


@dataclass
class Verification:
    """The verdict on one run and, when trusted, the effective config to use."""

    outcome: Outcome
    reason: str | None = None  # one of REJECT_REASONS when rejected
    hotkey: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None
    signed_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.REJECTED


class _Reject(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- canonical JSON


def normalize(value: Any) -> Any:
    """Rewrite integral floats as ints; raise ValueError on NaN/inf and unsafe integers.

    This is the form the signer stores and signs, so readers see exactly what was signed
    even after a float64 round trip (``1.0`` and ``1`` are the same number to WandB's backend).
    """
    kind = type(value)
    if kind is dict:
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"non-string key {k!r}")
            out[k] = normalize(v)
        return out
    if kind is list or kind is tuple:
        return [normalize(v) for v in value]
    if kind is float:
        if not math.isfinite(value):
            raise ValueError("non-finite number")
        if value.is_integer() and abs(value) <= _MAX_SAFE_INT:
            return int(value)
        return value
    if kind is int and abs(value) > _MAX_SAFE_INT:
        raise ValueError(f"integer {value} is beyond +-2**53 and would not survive a JSON round trip")
    if isinstance(value, Mapping):
        return normalize(dict(value))
    return value


def canonical(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON (orjson); raises TypeError/ValueError on non-JSON values."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise ValueError(str(exc)) from exc


def v2_message(
    *,
    entity_project: str,
    netuid: int,
    run_id: str,
    role: str,
    hotkey: str,
    payload: Mapping[str, Any],
    seq: int,
    signed_at: float,
    mode: str = "envelope",
) -> bytes:
    """The exact bytes a v2 signature covers."""
    return canonical(
        {
            "domain": DOMAIN,
            "entity_project": entity_project,
            "netuid": netuid,
            "run_id": run_id,
            "role": role,
            "hotkey": hotkey,
            "mode": mode,
            "payload": payload,
            "seq": seq,
            "signed_at": signed_at,
        }
    )


# --------------------------------------------------------------------------- sr25519 helpers


def _public_keypair(hotkey: str) -> Keypair:
    from bittensor_core import Keypair

    try:
        return Keypair(ss58_address=hotkey)
    except (ValueError, TypeError) as exc:
        raise _Reject("bad_ss58") from exc


def _sig_bytes(signature_hex: Any) -> bytes:
    if not isinstance(signature_hex, str):
        raise _Reject("bad_hex")
    text = signature_hex[2:] if signature_hex.startswith(("0x", "0X")) else signature_hex
    if len(text) != _SIG_HEX_LEN:
        raise _Reject("bad_hex")
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise _Reject("bad_hex") from exc


def _v1_sig_bytes(signature_hex: Any) -> bytes:
    """The v1 signature exactly as the original's ``verify_run`` reads it: ``bytes.fromhex`` of the
    stored string, so a ``0x`` prefix (which ``fromhex`` refuses) fails here too."""
    if not isinstance(signature_hex, str):
        raise _Reject("bad_hex")
    try:
        raw = bytes.fromhex(signature_hex)
    except ValueError as exc:
        raise _Reject("bad_hex") from exc
    if len(raw) != _SIG_HEX_LEN // 2:
        raise _Reject("bad_hex")
    return raw


def _verify_bytes(public: Keypair, message: bytes, signature: bytes) -> bool:
    try:
        return bool(public.verify(message, signature))
    except (ValueError, TypeError):
        return False


def v1_digest(run_id: str) -> bytes:
    """What the original signs: the raw 32-byte SHA-256 of the UTF-8 run id."""
    return hashlib.sha256(run_id.encode()).digest()


def sign_v1(keypair: Keypair, run_id: str) -> str:
    """The original SN27 run signature: bare lowercase hex of sign(sha256(run_id))."""
    return bytes(keypair.sign(v1_digest(run_id))).hex()


def verify_v1(hotkey_ss58: Any, signature_hex: Any, run_id: Any) -> bool:
    """True iff ``signature_hex`` is the hotkey's v1 signature of ``run_id``; never raises."""
    try:
        return _check_v1(hotkey_ss58, signature_hex, run_id)
    except _Reject:
        return False
    except Exception:  # noqa: BLE001 - the contract is "never raises" on hostile input
        return False


def _check_v1(hotkey: Any, signature_hex: Any, run_id: Any) -> bool:
    if not isinstance(hotkey, str) or not isinstance(run_id, str):
        raise _Reject("missing_fields")
    sig = _v1_sig_bytes(signature_hex)
    public = _public_keypair(hotkey)
    return _verify_bytes(public, v1_digest(run_id), sig)


# --------------------------------------------------------------------------- v2 envelope


def make_envelope(
    keypair: Keypair,
    *,
    entity_project: str,
    netuid: int,
    run_id: str,
    role: str,
    payload: Mapping[str, Any],
    seq: int,
    signed_at: float,
    mode: str = "envelope",
) -> dict[str, Any]:
    """Sign ``payload`` for this run; return the dict to store under ``config[ENVELOPE_KEY]``.

    Raises ValueError when the payload is not JSON-safe (NaN, non-string keys, huge ints).
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError("seq must be a non-negative integer")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    body = normalize(dict(payload))
    stamp = normalize(float(signed_at))
    hotkey = keypair.ss58_address
    message = v2_message(
        entity_project=entity_project,
        netuid=netuid,
        run_id=run_id,
        role=role,
        hotkey=hotkey,
        payload=body,
        seq=seq,
        signed_at=stamp,
        mode=mode,
    )
    return {
        "version": ENVELOPE_VERSION,
        "hotkey": hotkey,
        "role": role,
        "netuid": netuid,
        "mode": mode,
        "seq": seq,
        "signed_at": stamp,
        "payload": body,
        "signature": bytes(keypair.sign(message)).hex(),
    }


def verify_run(
    record: RunRecord,
    *,
    entity_project: str,
    netuid: int,
    role: str,
    now: float,
    max_age: float | None = None,
    last_seq: dict[str, int] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_future_skew: float = DEFAULT_MAX_FUTURE_SKEW,
) -> Verification:
    """Decide whether a run read from a store can be trusted, and what config to use.

    - A v2 envelope present: it alone decides. Valid -> VALID_V2 with the signed payload.
      Invalid -> REJECTED even when the v1 signature verifies (a valid v1 signature next to
      a broken envelope means the content was changed after signing: ``tampered``).
    - No envelope: the original check on top-level ``hotkey``/``signature`` over the run id
      -> VALID_V1_ONLY with the top-level keys, or REJECTED. ``max_age`` then applies to the
      store's ``updated_at`` (heartbeat), the only time a v1 run has.

    ``last_seq`` maps hotkey -> highest seq seen; a lower seq is ``replayed_seq``, and a
    valid v2 run raises the stored value. Never raises.
    """
    ctx = _Context(entity_project, netuid, role, now, max_age, last_seq, max_bytes, max_future_skew)
    try:
        return ctx.verify(record)
    except _Reject as rej:
        return Verification(Outcome.REJECTED, rej.reason, _hotkey_of(record))
    except Exception:  # noqa: BLE001 - hostile input must never crash a reader
        return Verification(Outcome.REJECTED, "non_json", _hotkey_of(record))


def _hotkey_of(record: Any) -> str | None:
    """Best-effort hotkey for labelling a rejection (never trusted for anything else)."""
    try:
        config = record.config
        env = config.get(ENVELOPE_KEY) if isinstance(config, dict) else None
        hotkey = env.get("hotkey") if isinstance(env, dict) else None
        hotkey = hotkey if isinstance(hotkey, str) else config.get("hotkey")
        return hotkey if isinstance(hotkey, str) and len(hotkey) < 64 else None
    except Exception:  # noqa: BLE001
        return None


@dataclass
class _Envelope:
    hotkey: str
    payload: dict[str, Any]
    seq: int
    signed_at: float
    signature: Any
    mode: str
    role: Any
    netuid: Any


@dataclass
class _Context:
    entity_project: str
    netuid: int
    role: str
    now: float
    max_age: float | None
    last_seq: dict[str, int] | None
    max_bytes: int
    max_future_skew: float

    def verify(self, record: RunRecord) -> Verification:
        config = record.config
        if not isinstance(config, dict) or not isinstance(record.run_id, str):
            raise _Reject("non_json")
        if record.extra.get("invalid_config"):
            raise _Reject("non_json")
        self._check_declared(config)
        if config.get(ENVELOPE_KEY) is None:
            return self._verify_v1_only(record, config)
        return self._verify_v2(record, config, _envelope(config[ENVELOPE_KEY]))

    def _check_declared(self, config: dict[str, Any]) -> None:
        """Top-level role/netuid (what the store's server-side filters matched) must agree."""
        declared_role = config.get("role")
        if declared_role is not None and declared_role != self.role:
            raise _Reject("wrong_role")
        inner = config.get("config")
        if isinstance(inner, dict) and "netuid" in inner and not _same_int(inner["netuid"], self.netuid):
            raise _Reject("wrong_netuid")

    def _verify_v1_only(self, record: RunRecord, config: dict[str, Any]) -> Verification:
        hotkey, signature = config.get("hotkey"), config.get("signature")
        if hotkey is None or signature is None:
            raise _Reject("missing_fields")
        if not isinstance(hotkey, str):
            raise _Reject("bad_ss58")
        sig = _v1_sig_bytes(signature)
        if not _verify_bytes(_public_keypair(hotkey), v1_digest(record.run_id), sig):
            raise _Reject("wrong_signature")
        if self.max_age is not None and record.updated_at and record.updated_at < self.now - self.max_age:
            raise _Reject("stale")
        if self.max_bytes and len(canonical(config)) > self.max_bytes:
            raise _Reject("oversized")
        payload = {k: v for k, v in config.items() if k != "signature"}
        return Verification(Outcome.VALID_V1_ONLY, None, hotkey, payload, None, None)

    def _verify_v2(self, record: RunRecord, config: dict[str, Any], env: _Envelope) -> Verification:
        if env.role != self.role:
            raise _Reject("wrong_role")
        if env.netuid is not None and not _same_int(env.netuid, self.netuid):
            raise _Reject("wrong_netuid")
        sig = _sig_bytes(env.signature)
        public = _public_keypair(env.hotkey)
        top_hotkey = config.get("hotkey")
        if top_hotkey is not None and top_hotkey != env.hotkey:
            raise _Reject("tampered")
        message = self._message(record.run_id, env, env.payload, env.signed_at)
        if self.max_bytes and len(message) > self.max_bytes:
            raise _Reject("oversized")
        if not _verify_bytes(public, message, sig) and not self._verify_normalized(
            public, sig, message, record, env
        ):
            v1_ok = _verify_v1_quiet(public, config.get("signature"), record.run_id)
            raise _Reject("tampered" if v1_ok else "wrong_signature")
        if env.mode == "full":
            _check_shadowed(config, env.payload)
        self._check_fresh(env.signed_at)
        self._check_seq(env.hotkey, env.seq)
        return Verification(Outcome.VALID_V2, None, env.hotkey, env.payload, env.seq, float(env.signed_at))

    def _message(self, run_id: str, env: _Envelope, payload: Any, signed_at: Any) -> bytes:
        try:
            return v2_message(
                entity_project=self.entity_project,
                netuid=self.netuid,
                run_id=run_id,
                role=self.role,
                hotkey=env.hotkey,
                payload=payload,
                seq=env.seq,
                signed_at=signed_at,
                mode=env.mode,
            )
        except (TypeError, ValueError) as exc:
            raise _Reject("non_json") from exc

    def _verify_normalized(
        self, public: Keypair, sig: bytes, first: bytes, record: RunRecord, env: _Envelope
    ) -> bool:
        """Second chance for payloads whose integers came back as floats (``1`` -> ``1.0``)."""
        try:
            body, stamp = normalize(env.payload), normalize(env.signed_at)
        except ValueError:
            return False
        message = self._message(record.run_id, env, body, stamp)
        return message != first and _verify_bytes(public, message, sig)

    def _check_fresh(self, signed_at: float) -> None:
        if self.max_age is not None and signed_at < self.now - self.max_age:
            raise _Reject("stale")
        if signed_at > self.now + self.max_future_skew:
            raise _Reject("stale")  # a future stamp would keep a dead publisher "fresh" forever

    def _check_seq(self, hotkey: str, seq: int) -> None:
        if self.last_seq is None:
            return
        seen = self.last_seq.get(hotkey)
        if seen is not None and seq < seen:
            raise _Reject("replayed_seq")
        self.last_seq[hotkey] = seq if seen is None else max(seen, seq)


def _envelope(raw: Any) -> _Envelope:
    if not isinstance(raw, dict):
        raise _Reject("missing_fields")
    required = ("version", "hotkey", "payload", "seq", "signed_at", "signature")
    if any(key not in raw for key in required) or raw["version"] != ENVELOPE_VERSION:
        raise _Reject("missing_fields")
    hotkey, payload, seq, signed_at = raw["hotkey"], raw["payload"], raw["seq"], raw["signed_at"]
    mode = raw.get("mode", "envelope")
    if not isinstance(hotkey, str):
        raise _Reject("bad_ss58")
    if not isinstance(payload, dict):
        raise _Reject("non_json")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or mode not in MODES:
        raise _Reject("missing_fields")
    if isinstance(signed_at, bool) or not isinstance(signed_at, (int, float)) or not math.isfinite(signed_at):
        raise _Reject("missing_fields")
    return _Envelope(
        hotkey, payload, seq, signed_at, raw["signature"], mode, raw.get("role"), raw.get("netuid")
    )


def _same_int(value: Any, expected: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == expected


def _verify_v1_quiet(public: Keypair, signature: Any, run_id: str) -> bool:
    try:
        return _verify_bytes(public, v1_digest(run_id), _v1_sig_bytes(signature))
    except _Reject:
        return False


def _check_shadowed(config: dict[str, Any], payload: dict[str, Any]) -> None:
    """In ``full`` mode a top-level copy of a payload key must equal the signed value."""
    for key, value in payload.items():
        if key in config and config[key] != value:
            raise _Reject("tampered")
