"""A simulated SN27 network of signed runs, for the demo, the benchmark and the tests.

``seed_network(store)`` publishes, through any :class:`StateStore`, what a small live subnet
holds: validators with ``stats`` / ``allocated_hotkeys`` / penalty lists, miners with
``get_perf_info`` specs, all signed with real sr25519 dev keys (``//validator{i}``,
``//miner{i}``) in both schemes (v1 run-id signature at the top level, v2 envelope with the
payload mirrored at the top level so the original code can read it too). A few runs are made
adversarial on purpose: tampered after signing, signed only the old (v1) way, a validator with
a permit but too little stake, a miner that claims more GPUs than proof-of-GPU found.

:class:`MemoryStateStore` is a dict-backed store with the StateStore behaviour the refresher
relies on; it lets the benchmark measure parsing, verification and aggregation without I/O.
"""

from __future__ import annotations

import copy
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exporters.core.signing import ENVELOPE_KEY, make_envelope, sign_v1
from exporters.core.state.base import RequestCounts, RunRecord, StateStore
from exporters.subnet.trust import ChainState, NeuronInfo, StaticValidatorSource

# (model, proof-of-GPU score weight as in the original's config.yaml)
GPU_MODELS = (
    ("NVIDIA B200", 5.0),
    ("NVIDIA H200", 4.0),
    ("NVIDIA H100 80GB HBM3", 3.3),
    ("NVIDIA A100-SXM4-80GB", 1.9),
    ("NVIDIA L40S", 1.0),
    ("NVIDIA GeForce RTX 4090", 0.7),
)
GPU_COUNTS = (1, 2, 4, 8)
PENALTY_CODES = ("PORT_CLOSED", "SSH_ACCESS_DISABLED", "ALLOCATION_FAILED")
VERSION_AS_INT = 190  # ni-compute v1.9.0
VALIDATOR_STAKE = 5.0e4
LOW_STAKE = 5.0e2


@dataclass
class SimulatedNetwork:
    """What was published, so callers (demo, tests) know the expected picture."""

    netuid: int
    validator_keys: list[Any]
    miner_keys: list[Any]
    chain: ChainState
    run_ids: dict[str, str] = field(default_factory=dict)  # hotkey -> run id
    allocated: set[str] = field(default_factory=set)
    penalized: set[str] = field(default_factory=set)
    tampered: set[str] = field(default_factory=set)  # run ids
    v1_only: set[str] = field(default_factory=set)  # run ids
    overclaiming: set[str] = field(default_factory=set)  # miner hotkeys claiming extra GPUs
    low_stake_validator: str | None = None
    pog: dict[int, tuple[str, int]] = field(default_factory=dict)  # uid -> proven (model, count)
    clock: Callable[[], float] = time.time

    @property
    def validator_hotkeys(self) -> list[str]:
        return [k.ss58_address for k in self.validator_keys]

    @property
    def miner_hotkeys(self) -> list[str]:
        return [k.ss58_address for k in self.miner_keys]

    def source(self) -> StaticValidatorSource:
        """A validator source answering with this network's metagraph."""
        return StaticValidatorSource(self.chain, clock=self.clock)


def _keypair(uri: str) -> Any:
    from bittensor_core import Keypair

    return Keypair.create_from_uri(uri)


def pog_score(model: str, count: int) -> float:
    """The original's ``calc_score_pog`` on the published 0-100 scale."""
    weights = dict(GPU_MODELS)
    best = max(weights.values())
    return round(weights[model] * min(count, 8) * 100 / (best * 8), 4)


def perf_info(model: str, count: int, rng: random.Random) -> dict[str, Any]:
    """A ``get_perf_info(encrypted=False)``-shaped specs dict."""
    memory = 81559 if "80GB" in model or "H100" in model else 49140
    return {
        "cpu": {"count": rng.choice((32, 64, 128)), "frequency": 2450.0},
        "gpu": {
            "count": count,
            "capacity": memory * count,
            "details": [{"name": model, "capacity": memory} for _ in range(count)],
            "graphics_speed": 1980,
            "memory_speed": 2619,
        },
        "hard_disk": {
            "total": 2 * 10**12,
            "free": 10**12,
            "used": 10**12,
            "write_speed": 1800.0,
            "read_speed": 2400.0,
        },
        "ram": {
            "total": 512 * 2**30,
            "available": 400 * 2**30,
            "used": 112 * 2**30,
            "free": 380 * 2**30,
            "swap_total": 0,
            "swap_used": 0,
            "swap_free": 0,
            "read_speed": 9000.0,
            "write_speed": 7000.0,
        },
        "has_docker": True,
    }


def _stats_entry(uid: int, hotkey: str, proven: tuple[str, int] | None, allocated: bool, now: float) -> dict:
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now))
    if proven is None:  # not queryable: the original writes score 0 and gpu_specs null
        return {
            "uid": uid,
            "hotkey": hotkey,
            "gpu_specs": None,
            "score": 0,
            "allocated": False,
            "own_score": True,
            "reliability_score": 0.0,
            "created_at": created,
        }
    model, count = proven
    return {
        "uid": uid,
        "hotkey": hotkey,
        "gpu_specs": {"gpu_name": model, "num_gpus": count},
        "score": pog_score(model, count),
        "allocated": allocated,
        "own_score": True,
        "reliability_score": 0.0,
        "created_at": created,
    }


class _Publisher:
    """Signs and publishes one simulated neuron's run ``{role}-{hotkey}``, v1 (plus a v2 envelope)."""

    def __init__(self, store: StateStore, netuid: int, clock: Callable[[], float]) -> None:
        self.store = store
        self.netuid = netuid
        self.clock = clock

    def publish(self, keypair: Any, role: str, payload: dict[str, Any], *, v2: bool = True) -> str:
        hotkey = keypair.ss58_address
        run_id = self.store.run_id_for(role, hotkey, target="neuron")
        config: dict[str, Any] = {
            "hotkey": hotkey,
            "role": role,
            "config": {"netuid": self.netuid},
            "version": VERSION_AS_INT,
            "signature": sign_v1(keypair, run_id),
            **payload,
        }
        if v2:
            config[ENVELOPE_KEY] = make_envelope(
                keypair,
                entity_project=self.store.entity_project,
                netuid=self.netuid,
                run_id=run_id,
                role=role,
                payload=payload,
                seq=1,
                signed_at=self.clock(),
            )
        self.store.publish(role, hotkey, config, target="neuron")
        return run_id

    def tamper(self, keypair: Any, role: str, key: str, value: Any) -> None:
        """Change ``key`` after signing, in the envelope and at the top level (a full forgery)."""
        hotkey = keypair.ss58_address
        run = next(r for r in self.store.read_runs(role, self.netuid) if r.config.get("hotkey") == hotkey)
        envelope = copy.deepcopy(run.config[ENVELOPE_KEY])
        envelope["payload"][key] = value
        self.store.publish(role, hotkey, {key: value, ENVELOPE_KEY: envelope}, target="neuron")


def seed_network(
    store: StateStore,
    *,
    validators: int = 4,
    miners: int = 16,
    seed: int = 0,
    tampered: int = 1,
    v1_only: int = 1,
    penalized: int = 2,
    low_stake_validator: bool = True,
    max_uids: int = 256,
    netuid: int = 27,
    clock: Callable[[], float] = time.time,
    pog_overrides: Mapping[int, tuple[str, int]] | None = None,
) -> SimulatedNetwork:
    """Publish a simulated subnet into ``store``; return the keys and the matching metagraph.

    Layout: validators take uids ``0..validators-1`` (``//validator{i}``, permit, 5e4 stake),
    miners the next uids (``//miner{i}``) up to ``max_uids`` (the subnet size, 256 on SN27);
    miners beyond it still publish running runs but are not registered (deregistered). With
    ``low_stake_validator`` one more permitted validator publishes with too little stake
    (untrusted). The last ``v1_only`` registered miners (and, when ``v1_only >= 2``, the last
    validator) sign only the old run-id way; the ``tampered`` registered miners before them are
    edited after signing. Validator 0 allocates every third miner
    (validators 1 and 2 co-claim some; validator 2 measures half the GPUs on some) and publishes
    the penalty checklist (plain hotkeys, the shape v1.9.0 applies); validator 1 publishes
    ``penalized_hotkeys`` too. Every fifth miner over-claims its GPU count. ``pog_overrides``
    ({miner index: (model, count)}) fixes the proven hardware of chosen miners (the rest of the
    simulation stays as the seed makes it), e.g. so a simulated miner exporter can publish specs
    its proof-of-GPU confirms.
    """
    rng = random.Random(seed)
    now = clock()
    vkeys = [_keypair(f"//validator{i}") for i in range(validators)]
    mkeys = [_keypair(f"//miner{i}") for i in range(miners)]
    extra = [_keypair("//validator-lowstake")] if low_stake_validator else []
    neurons: dict[str, NeuronInfo] = {}
    for uid, key in enumerate(vkeys):
        neurons[key.ss58_address] = NeuronInfo(uid, True, VALIDATOR_STAKE)
    registered = max(0, min(miners, max_uids - validators - len(extra)))
    for offset, key in enumerate(mkeys[:registered]):
        neurons[key.ss58_address] = NeuronInfo(validators + offset, False, 0.0)
    for key in extra:
        neurons[key.ss58_address] = NeuronInfo(len(neurons), True, LOW_STAKE)
    net = SimulatedNetwork(
        netuid, vkeys, mkeys, ChainState(netuid, neurons, block=4_000_000, fetched_at=now), clock=clock
    )
    net.low_stake_validator = extra[0].ss58_address if extra else None

    # Proof-of-GPU truth per miner uid (every seventh miner is not queryable).
    for offset in range(registered):
        if offset % 7 == 6:
            continue
        net.pog[validators + offset] = (rng.choice(GPU_MODELS)[0], rng.choice(GPU_COUNTS))
        if pog_overrides and offset in pog_overrides:
            net.pog[validators + offset] = pog_overrides[offset]
    alloc_by = {0: {mkeys[i].ss58_address for i in range(0, miners, 3) if validators + i in net.pog}}
    alloc_by[1] = set(sorted(alloc_by[0])[::2]) if validators > 1 else set()
    alloc_by[2] = set(sorted(alloc_by[0])[1::2]) if validators > 2 else set()
    net.allocated = set().union(*alloc_by.values())
    pen_keys = [mkeys[i].ss58_address for i in range(1, miners, 4)][:penalized]
    net.penalized = set(pen_keys)

    pub = _Publisher(store, netuid, clock)
    v1_validators = {validators - 1} if v1_only >= 2 and validators > 1 else set()
    for index, key in enumerate([*vkeys, *extra]):
        mine = alloc_by.get(index, set())
        stats = {}
        for offset, mkey in enumerate(mkeys[:registered]):
            uid = validators + offset
            proven = net.pog.get(uid)
            if proven is not None and index == 2 and offset % 4 == 0:  # one validator measures fewer GPUs
                proven = (proven[0], max(1, proven[1] // 2))
            stats[str(uid)] = _stats_entry(uid, mkey.ss58_address, proven, mkey.ss58_address in mine, now)
        payload: dict[str, Any] = {"stats": stats, "allocated_hotkeys": sorted(mine)}
        if index == 0 and pen_keys:
            # Plain hotkeys: v1.9.0 compares strings (``hotkey in list``), so dicts would penalize nobody.
            payload["penalized_hotkeys_checklist"] = list(pen_keys)
        if index == 1 and pen_keys:
            payload["penalized_hotkeys"] = pen_keys[:1]
        run_id = pub.publish(key, "validator", payload, v2=index not in v1_validators)
        net.run_ids[key.ss58_address] = run_id
        if index in v1_validators:
            net.v1_only.add(run_id)

    pool = registered or miners  # adversaries among registered miners, where they matter
    v1_miners = set(range(max(0, pool - max(0, v1_only - len(v1_validators))), pool))
    tampered_miners = set(range(max(0, pool - len(v1_miners) - tampered), pool - len(v1_miners)))
    for offset, key in enumerate(mkeys):
        proven = net.pog.get(validators + offset) or (rng.choice(GPU_MODELS)[0], 1)
        model, count = proven
        if offset % 5 == 4:
            count = count * 2
            net.overclaiming.add(key.ss58_address)
        claimers = [v.ss58_address for i, v in enumerate(vkeys) if key.ss58_address in alloc_by.get(i, ())]
        allocated = claimers[0] if claimers else None
        payload = {"specs": perf_info(model, count, rng), "allocated": allocated}
        run_id = pub.publish(key, "miner", payload, v2=offset not in v1_miners)
        net.run_ids[key.ss58_address] = run_id
        if offset in v1_miners:
            net.v1_only.add(run_id)
        if offset in tampered_miners:
            pub.tamper(key, "miner", "specs", perf_info("NVIDIA B200", 8, rng))
            net.tampered.add(run_id)
    return net


class MemoryStateStore:
    """A dict-backed StateStore (same filters and ordering as the SQLite store), no I/O.

    Used by the benchmark to time the refresh without network wait, and handy in tests.
    ``fail`` makes every call raise ``StoreUnavailable``.
    """

    backend = "memory"

    def __init__(
        self, entity_project: str = "neuralinternet/opencompute", clock: Callable[[], float] = time.time
    ) -> None:
        self.entity_project = entity_project
        self.clock = clock
        self.fail = False
        self._runs: dict[str, RunRecord] = {}
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()
        self._requests = RequestCounts()
        self._ids = random.Random(1)

    def _count(self, operation: str) -> None:
        from exporters.core.state.base import StoreUnavailable

        self._requests.add(operation)
        if self.fail:
            raise StoreUnavailable("memory store marked unavailable")

    def run_id_for(self, role: str, hotkey: str, target: str = "neuron") -> str:
        """Neuron-style runs only: this store stands in for the neurons' WandB runs."""
        self._count("run_id")
        return self._ensure(role, hotkey).run_id

    def _ensure(self, role: str, hotkey: str) -> RunRecord:
        name = f"{role}-{hotkey}"
        with self._lock:
            run_id = self._names.get(name)
            if run_id is None:
                run_id = "".join(self._ids.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
                now = self.clock()
                self._names[name] = run_id
                self._runs[run_id] = RunRecord(run_id, name, {}, "running", now, now)
            return self._runs[run_id]

    def publish(
        self, role: str, hotkey: str, updates: dict[str, Any], defaults: Any = None, *, target: str = "neuron"
    ) -> str:
        self._count("publish")
        run = self._ensure(role, hotkey)
        config = {**copy.deepcopy(run.config), **copy.deepcopy(updates)}
        with self._lock:
            self._runs[run.run_id] = RunRecord(
                run.run_id, run.name, config, "running", run.created_at, self.clock()
            )
        return run.run_id

    def put(self, record: RunRecord) -> None:
        """Insert or replace a run verbatim (benchmarks and hostile-input tests)."""
        with self._lock:
            self._runs[record.run_id] = record
            self._names[record.name] = record.run_id

    def put_many(self, records: Iterable[RunRecord]) -> None:
        for record in records:
            self.put(record)

    def set_state(self, role: str, hotkey: str, state: str) -> None:
        run = self._ensure(role, hotkey)
        with self._lock:
            self._runs[run.run_id] = RunRecord(
                run.run_id, run.name, run.config, state, run.created_at, self.clock()
            )

    def read_runs(
        self,
        role: str,
        netuid: int,
        *,
        require_key: str | None = None,
        running_only: bool = False,
        updated_since: float | None = None,
    ) -> list[RunRecord]:
        self._count("read")
        with self._lock:
            runs = list(self._runs.values())
        out = []
        for run in runs:
            cfg = run.config if isinstance(run.config, dict) else {}
            inner = cfg.get("config")
            if cfg.get("role") != role or not isinstance(inner, dict) or inner.get("netuid") != netuid:
                continue
            if require_key is not None and require_key not in cfg:
                continue
            if running_only and run.state != "running":
                continue
            if updated_since is not None and run.updated_at < updated_since:
                continue
            out.append(run)
        return sorted(out, key=lambda r: (-r.created_at, r.run_id))

    def request_count(self) -> int:
        return self._requests.total()

    def request_counts(self) -> dict[str, int]:
        return self._requests.by_operation()
