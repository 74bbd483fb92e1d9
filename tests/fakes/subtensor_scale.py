"""FAKE chain data at the byte level: subtensor's runtime types, SCALE-encoded and decoded by bittensor 11.

bittensor 11 ships no metadata or recorded chain responses, and a real ``RuntimeCodec`` is built
from a runtime's metadata. So this module writes a minimal runtime metadata (``MetadataV14``
with a portable type registry and nothing else) holding the types the chain collector reads,
transcribed field by field from subtensor's Rust definitions:

- ``Metagraph<AccountId>`` (``pallets/subtensor/src/rpc_info/metagraph.rs``, opentensor/subtensor
  at cae812234b90, ``#[freeze_struct("6fc49d5a7dc0e339")]``), the output of
  ``SubnetInfoRuntimeApi.get_metagraph``;
- ``AxonInfo`` and ``PrometheusInfo`` (``pallets/subtensor/src/lib.rs``), ``AccountId32``
  (``sp_core::crypto``), ``I96F32`` (``substrate_fixed``: ``{bits: i128}``);
- the storage values ``ValidatorTrust`` (``Vec<u16>``) and ``OwnedHotkeys`` (``Vec<AccountId32>``).

Newtypes (``NetUid``, ``AlphaCurrency``, ``TaoCurrency``) are written as the primitive they wrap:
SCALE encodes a one-field struct exactly as its field. The identity records are only ever
``None`` here (their inner layout is not exercised).

:class:`SubtensorScale` encodes a Python value with bittensor's own :class:`RuntimeCodec`
(``bittensor._transport.codec``, backed by ``bittensor_core``) and decodes the bytes back with the
same codec, which is what ``RpcSubstrate`` does with a node's answer. What a test then sees is the
shape bittensor's real decoder produces (ss58 strings for account ids, ints for compacts, dicts
for structs), not a hand-written guess.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from bittensor._transport.codec import RuntimeCodec

# TypeDef variants of scale-info's PortableRegistry, and its primitive kinds.
_COMPOSITE, _VARIANT, _SEQUENCE, _ARRAY, _TUPLE, _PRIMITIVE, _COMPACT = range(7)
_PRIMITIVES = {"bool": 0, "u8": 3, "u16": 4, "u32": 5, "u64": 6, "u128": 7, "i128": 13}


def compact(n: int) -> bytes:
    """SCALE compact integer."""
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def _text(value: str) -> bytes:
    data = value.encode()
    return compact(len(data)) + data


def _vec(items: list[bytes]) -> bytes:
    return compact(len(items)) + b"".join(items)


def _option(item: bytes | None) -> bytes:
    return b"\x00" if item is None else b"\x01" + item


class _Registry:
    """A scale-info portable registry under construction (types get ids in insertion order)."""

    def __init__(self) -> None:
        self._types: list[bytes] = []
        self._ids: dict[Any, int] = {}

    def _add(self, key: Any, typedef: bytes, path: tuple[str, ...] = (), params: tuple = ()) -> int:
        if key in self._ids:
            return self._ids[key]
        type_id = len(self._types)
        self._ids[key] = type_id
        encoded_params = _vec(
            [_text(name) + _option(compact(t) if t is not None else None) for name, t in params]
        )
        self._types.append(
            compact(type_id) + _vec([_text(p) for p in path]) + encoded_params + typedef + _vec([])
        )
        return type_id

    def prim(self, name: str) -> int:
        return self._add(("prim", name), bytes([_PRIMITIVE, _PRIMITIVES[name]]))

    def compact_of(self, inner: int) -> int:
        return self._add(("compact", inner), bytes([_COMPACT]) + compact(inner))

    def vec(self, inner: int) -> int:
        return self._add(("vec", inner), bytes([_SEQUENCE]) + compact(inner))

    def array(self, length: int, inner: int) -> int:
        return self._add(
            ("array", length, inner), bytes([_ARRAY]) + length.to_bytes(4, "little") + compact(inner)
        )

    def tuple_of(self, *items: int) -> int:
        return self._add(("tuple", items), bytes([_TUPLE]) + _vec([compact(i) for i in items]))

    def option(self, inner: int) -> int:
        variants = [
            _text("None") + _vec([]) + bytes([0]) + _vec([]),
            _text("Some")
            + _vec([_option(None) + compact(inner) + _option(None) + _vec([])])
            + bytes([1])
            + _vec([]),
        ]
        return self._add(("option", inner), bytes([_VARIANT]) + _vec(variants), ("Option",), (("T", inner),))

    def struct(self, path: tuple[str, ...], fields: list[tuple[str | None, int]]) -> int:
        encoded = [
            _option(_text(name) if name else None) + compact(t) + _option(None) + _vec([])
            for name, t in fields
        ]
        return self._add(("struct", path), bytes([_COMPOSITE]) + _vec(encoded), path)

    def metadata_v14(self) -> bytes:
        """``meta`` + version 14 + registry, no pallets, an empty extrinsic description."""
        u8 = self.prim("u8")
        extrinsic = compact(u8) + bytes([4]) + _vec([])
        return b"meta" + bytes([14]) + _vec(self._types) + _vec([]) + extrinsic + compact(u8)


class SubtensorScale:
    """The runtime types the chain collector reads, with bittensor's codec over them."""

    def __init__(self) -> None:
        r = _Registry()
        u8, u16, u32, u64, u128 = (r.prim(n) for n in ("u8", "u16", "u32", "u64", "u128"))
        boolean, i128 = r.prim("bool"), r.prim("i128")
        c_u8, c_u16, c_u64, c_u128 = (r.compact_of(t) for t in (u8, u16, u64, u128))
        account = r.struct(("sp_core", "crypto", "AccountId32"), [(None, r.array(32, u8))])
        bytes_ = r.vec(u8)
        subnet_identity = r.struct(
            ("pallet_subtensor", "SubnetIdentityV3"),
            [
                (name, bytes_)
                for name in (
                    "subnet_name",
                    "github_repo",
                    "subnet_contact",
                    "subnet_url",
                    "discord",
                    "description",
                    "logo_url",
                    "additional",
                )
            ],
        )
        chain_identity = r.struct(
            ("pallet_subtensor", "ChainIdentityV2"),
            [
                (name, bytes_)
                for name in ("name", "url", "github_repo", "image", "discord", "description", "additional")
            ],
        )
        axon = r.struct(
            ("pallet_subtensor", "AxonInfo"),
            [
                ("block", u64),
                ("version", u32),
                ("ip", u128),
                ("port", u16),
                ("ip_type", u8),
                ("protocol", u8),
                ("placeholder1", u8),
                ("placeholder2", u8),
            ],
        )
        self.prometheus_info = r.struct(
            ("pallet_subtensor", "PrometheusInfo"),
            [("block", u64), ("version", u32), ("ip", u128), ("port", u16), ("ip_type", u8)],
        )
        fixed = r.struct(("substrate_fixed", "FixedI128"), [("bits", i128)])
        dividends = r.vec(r.tuple_of(account, c_u64))
        self.metagraph = r.struct(
            ("pallet_subtensor", "rpc_info", "metagraph", "Metagraph"),
            [
                ("netuid", c_u16),
                ("name", r.vec(c_u8)),
                ("symbol", r.vec(c_u8)),
                ("identity", r.option(subnet_identity)),
                ("network_registered_at", c_u64),
                ("owner_hotkey", account),
                ("owner_coldkey", account),
                ("block", c_u64),
                ("tempo", c_u16),
                ("last_step", c_u64),
                ("blocks_since_last_step", c_u64),
                ("subnet_emission", c_u64),
                ("alpha_in", c_u64),
                ("alpha_out", c_u64),
                ("tao_in", c_u64),
                ("alpha_out_emission", c_u64),
                ("alpha_in_emission", c_u64),
                ("tao_in_emission", c_u64),
                ("pending_alpha_emission", c_u64),
                ("pending_root_emission", c_u64),
                ("subnet_volume", c_u128),
                ("moving_price", fixed),
                ("rho", c_u16),
                ("kappa", c_u16),
                ("min_allowed_weights", c_u16),
                ("max_weights_limit", c_u16),
                ("weights_version", c_u64),
                ("weights_rate_limit", c_u64),
                ("activity_cutoff", c_u16),
                ("max_validators", c_u16),
                ("num_uids", c_u16),
                ("max_uids", c_u16),
                ("burn", c_u64),
                ("difficulty", c_u64),
                ("registration_allowed", boolean),
                ("pow_registration_allowed", boolean),
                ("immunity_period", c_u16),
                ("min_difficulty", c_u64),
                ("max_difficulty", c_u64),
                ("min_burn", c_u64),
                ("max_burn", c_u64),
                ("adjustment_alpha", c_u64),
                ("adjustment_interval", c_u16),
                ("target_regs_per_interval", c_u16),
                ("max_regs_per_block", c_u16),
                ("serving_rate_limit", c_u64),
                ("commit_reveal_weights_enabled", boolean),
                ("commit_reveal_period", c_u64),
                ("liquid_alpha_enabled", boolean),
                ("alpha_high", c_u16),
                ("alpha_low", c_u16),
                ("bonds_moving_avg", c_u64),
                ("hotkeys", r.vec(account)),
                ("coldkeys", r.vec(account)),
                ("identities", r.vec(r.option(chain_identity))),
                ("axons", r.vec(axon)),
                ("active", r.vec(boolean)),
                ("validator_permit", r.vec(boolean)),
                ("pruning_score", r.vec(c_u16)),
                ("last_update", r.vec(c_u64)),
                ("emission", r.vec(c_u64)),
                ("dividends", r.vec(c_u16)),
                ("incentives", r.vec(c_u16)),
                ("consensus", r.vec(c_u16)),
                ("trust", r.vec(c_u16)),
                ("rank", r.vec(c_u16)),
                ("block_at_registration", r.vec(c_u64)),
                ("alpha_stake", r.vec(c_u64)),
                ("tao_stake", r.vec(c_u64)),
                ("total_stake", r.vec(c_u64)),
                ("tao_dividends_per_hotkey", dividends),
                ("alpha_dividends_per_hotkey", dividends),
            ],
        )
        self.option_metagraph = r.option(self.metagraph)
        self.u16_vec = r.vec(u16)
        self.account_vec = r.vec(account)
        self._metadata = r.metadata_v14()

    @cached_property
    def codec(self) -> RuntimeCodec:
        return RuntimeCodec(self._metadata, spec_version=300, transaction_version=1)

    def encode(self, type_id: int, value: Any) -> bytes:
        return self.codec.encode(f"scale_info::{type_id}", value)

    def round_trip(self, type_id: int, value: Any) -> Any:
        """``value`` as the chain would send it (SCALE) and bittensor's codec would hand it back."""
        return self.codec.decode(f"scale_info::{type_id}", self.encode(type_id, value))


SCALE = SubtensorScale()
