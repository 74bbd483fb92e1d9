"""Pure aggregation over verified runs: allocation, penalties, dominant PoG stats, miner specs.

Every function here is a plain function of already verified runs (see ``trust.py``): no I/O,
no clock, no metrics. Bad input never raises; it is skipped and recorded in an :class:`Issues`
sink under a bounded reason, which the refresher turns into
``opencompute_network_bad_input_total{reason}``.

``pick_dominant_dict`` and ``compat_stats_allocated`` reproduce the original validator's
``pick_dominant_dict`` / ``get_stats_allocated`` (ni-compute v1.9.0) exactly, including the
in-place ``own_score = True`` mutation, the "first seen wins" tie-break and where its per-run
``try`` stops reading a run, except that input which crashes the original (a non-integer uid
key, a contested entry whose ``gpu_specs`` is null or not an object) is skipped and counted
(``CRASH_REASONS``) instead. Bad values (non-finite or negative scores and GPU counts, null or
malformed ``gpu_specs``) are counted wherever they are read, contested or not; they keep their
vote (the network counts them) but are not exported as numbers (see :class:`UidStats`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson

# Bounds that keep label cardinality and work per refresh finite whatever a run contains.
MAX_UID = 4095  # the chain's hard cap on subnet size is 4096 uids
MAX_LIST_ITEMS = 4096  # allocated/penalized list entries read per run
MAX_STATS_ENTRIES = 4096  # stats entries read per run
MAX_LABEL_CHARS = 64
_MAX_GPUS = 1024  # a GPU count above this is not a real machine

_SS58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]{46,48}")

# status_code values the original's miner_checker writes; anything else becomes "other".
PENALTY_STATUS_CODES = frozenset(
    {"PORT_CLOSED", "SSH_ACCESS_DISABLED", "ALLOCATION_FAILED", "ALLOCATION_ERROR", "DEALLOCATION_FAILED"}
)

# Every reason this module can record (the refresher pre-declares them at 0).
BAD_INPUT_REASONS = (
    "allocated_hotkeys_not_list",
    "penalized_not_list",
    "list_too_long",
    "hotkey_invalid",
    "penalized_entry_invalid",
    "stats_not_object",
    "stats_too_many_entries",
    "stats_entry_not_object",
    "uid_not_integer",
    "uid_out_of_range",
    "score_not_number",
    "score_not_finite",
    "score_negative",
    "gpu_specs_null",
    "gpu_specs_invalid",
    "label_value_invalid",
    "specs_missing",
    "specs_not_object",
    "gpu_count_invalid",
    "duplicate_run",
)


@dataclass(frozen=True)
class VerifiedRun:
    """A run whose signature checked out, reduced to what the views need.

    ``payload`` is the effective config: the signed v2 payload, or the top-level config of a
    run that only carries a valid v1 signature. ``timestamp`` is the signed time (v2) or the
    store's ``updated_at`` (v1).
    """

    run_id: str
    role: str
    hotkey: str
    payload: Mapping[str, Any]
    signature: str = "v2"  # "v2" or "v1_only"
    timestamp: float = 0.0
    state: str = "running"


@dataclass
class Issues:
    """Bad-input sink: counts by reason, remembering which run each came from."""

    counts: Counter[str] = field(default_factory=Counter)
    by_run: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, reason: str, run_id: str = "", n: int = 1) -> None:
        self.counts[reason] += n
        self.by_run.setdefault(run_id, Counter())[reason] += n


def _note(issues: Issues | None, reason: str, run_id: str = "") -> None:
    if issues is not None:
        issues.add(reason, run_id)


def is_ss58(value: Any) -> bool:
    """Cheap shape check for an ss58 address (base58 alphabet, 46-48 chars); keeps labels bounded."""
    return isinstance(value, str) and _SS58.fullmatch(value) is not None


def clean_label(value: Any, issues: Issues | None = None, run_id: str = "") -> str:
    """A label-safe string: printable, encodable UTF-8, at most ``MAX_LABEL_CHARS`` characters."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    cleaned = "".join(ch for ch in text if ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF)
    cleaned = cleaned.strip()[:MAX_LABEL_CHARS]
    if cleaned != text.strip() or not isinstance(value, str):
        _note(issues, "label_value_invalid", run_id)
    return cleaned


# --- allocation ---------------------------------------------------------------------------


def allocated_hotkeys(runs: Iterable[VerifiedRun], issues: Issues | None = None) -> dict[str, set[str]]:
    """Allocated miner hotkey -> the validator hotkeys claiming it (the union, de-duplicated).

    Same rule as the original's ``get_allocated_hotkeys`` (every trusted, verified validator's
    ``allocated_hotkeys`` list counts) without its duplicates. The miner publisher uses this for
    its ``allocated`` field, so both exporters agree on who is allocated.
    """
    claims: dict[str, set[str]] = {}
    for run in runs:
        items = _bounded_list(run, "allocated_hotkeys", "allocated_hotkeys_not_list", issues)
        for item in items:
            if not is_ss58(item):
                _note(issues, "hotkey_invalid", run.run_id)
                continue
            claims.setdefault(item, set()).add(run.hotkey)
    return claims


def _bounded_list(run: VerifiedRun, key: str, reason: str, issues: Issues | None) -> list[Any]:
    """The items the original's ``list.extend(config[key])`` adds, bounded.

    A list gives its items; a dict gives its keys and a string its characters (what ``extend``
    does with them), both counted as ``reason``; a falsy value nothing. Anything else makes the
    original's ``extend`` raise inside its per-run ``try``: the run adds nothing.
    """
    value = run.payload.get(key)
    if not value:
        return []
    if isinstance(value, dict):
        _note(issues, reason, run.run_id)
        value = list(value)
    elif not isinstance(value, list):
        _note(issues, reason, run.run_id)
        return []  # a string's characters are never hotkeys; a number makes extend raise
    if len(value) > MAX_LIST_ITEMS:
        _note(issues, "list_too_long", run.run_id)
        return value[:MAX_LIST_ITEMS]
    return value


@dataclass(frozen=True)
class AllocationView:
    """Allocated miners with their claim counts, and which of them are no longer registered."""

    claims: Mapping[str, int]
    unregistered: frozenset[str]


def allocation_view(
    runs: Iterable[VerifiedRun], registered: Mapping[str, int] | None, issues: Issues | None = None
) -> AllocationView:
    """Union of allocations; ``registered`` None means the metagraph is unknown (no flagging)."""
    claims = allocated_hotkeys(runs, issues)
    unregistered = frozenset(hk for hk in claims if registered is not None and hk not in registered)
    return AllocationView({hk: len(v) for hk, v in sorted(claims.items())}, unregistered)


# --- penalties ----------------------------------------------------------------------------

PENALTY_KEYS = ("penalized_hotkeys", "penalized_hotkeys_checklist")
# The list the original validator applies (v1.9.0 ``get_penalized_hotkeys_checklist_bak``).
ENFORCED_PENALTY_KEY = "penalized_hotkeys_checklist"
# The one validator hotkey whose checklist the original v1.9.0 validator applies (hardcoded there,
# commit dbeb2bf5 "only get the blacklist from NI main validator"); --network.penalty-authority.
NI_PENALTY_AUTHORITY = "5GmvyePN9aYErXBBhBnxZKGoGk4LKZApE4NkaSzW62CYCYNA"


def penalty_listings(
    runs: Iterable[VerifiedRun], issues: Issues | None = None
) -> dict[str, set[tuple[str, str]]]:
    """Penalized miner hotkey -> ``(list, status_code)`` pairs, merged over runs.

    ``list`` is the config key the entry came from (:data:`PENALTY_KEYS`); ``status_code`` is ""
    for the plain-string shape. Accepts both shapes the original has used, under either key: a
    list of ss58 strings and a list of ``{"hotkey", "status_code", "description"}`` dicts.
    """
    out: dict[str, set[tuple[str, str]]] = {}
    for run in runs:
        for key in PENALTY_KEYS:
            for item in _bounded_list(run, key, "penalized_not_list", issues):
                parsed = _penalty_entry(item)
                if parsed is None:
                    _note(issues, "penalized_entry_invalid", run.run_id)
                    continue
                out.setdefault(parsed[0], set()).add((key, parsed[1]))
    return out


def penalized_hotkeys(runs: Iterable[VerifiedRun], issues: Issues | None = None) -> dict[str, set[str]]:
    """Penalized miner hotkey -> status codes ("" for the plain-string shape), from either list."""
    return {hk: {code for _, code in pairs} for hk, pairs in penalty_listings(runs, issues).items()}


@dataclass(frozen=True)
class PenaltyView:
    """Who is listed as penalized (by any trusted validator) and whose penalty takes effect.

    ``enforced`` holds the miners on a penalty authority's ``penalized_hotkeys_checklist``: the
    only list the original validator applies (it zeroes their score). ``authority_seen`` says
    whether any authority's run was among the trusted, verified runs at all, so an absent
    authority (nothing enforced because nobody could say) is distinguishable from "no penalties".
    """

    listed: Mapping[str, frozenset[tuple[str, str]]]  # hotkey -> {(list, status_code)}
    enforced: frozenset[str]
    authority_seen: bool


def penalty_view(
    runs: Sequence[VerifiedRun],
    authorities: Iterable[str],
    issues: Issues | None = None,
    *,
    authority_runs: Sequence[VerifiedRun] | None = None,
    dict_entries: bool = True,
) -> PenaltyView:
    """Listed and enforced penalties.

    ``runs`` (trusted validator runs) give the listed penalties. Enforced ones come from the
    ``penalized_hotkeys_checklist`` of ``authority_runs`` (default: the authorities among
    ``runs``). The network's reading passes every v1-verified authority run, trusted or not,
    and ``dict_entries=False``: v1.9.0's ``get_penalized_hotkeys_checklist_bak`` accepts the
    hardcoded hotkey on its signature alone and compares plain strings (``hotkey in list``), so
    a dict entry penalizes nobody there. The strict reading requires trust and counts both shapes.
    """
    listed = penalty_listings(runs, issues)
    wanted = frozenset(authorities)
    enforced: set[str] = set()
    seen = False
    for run in runs if authority_runs is None else authority_runs:
        if run.hotkey not in wanted:
            continue
        seen = True
        for item in _bounded_list(run, ENFORCED_PENALTY_KEY, "penalized_not_list", None):
            parsed = _penalty_entry(item) if dict_entries else (item, "") if is_ss58(item) else None
            if parsed is not None:
                enforced.add(parsed[0])
    frozen = MappingProxyType({hk: frozenset(pairs) for hk, pairs in sorted(listed.items())})
    return PenaltyView(frozen, frozenset(enforced), seen)


def _penalty_entry(item: Any) -> tuple[str, str] | None:
    if is_ss58(item):
        return item, ""
    if isinstance(item, dict) and is_ss58(item.get("hotkey")):
        code = item.get("status_code")
        if code is None:
            return item["hotkey"], ""
        return item["hotkey"], code if isinstance(code, str) and code in PENALTY_STATUS_CODES else "other"
    return None


# --- dominant stats (parity with get_stats_allocated / pick_dominant_dict) ----------------


def _vote_key(entry: dict[str, Any]) -> tuple[Any, Any, Any]:
    specs = entry.get("gpu_specs", {})
    return (specs.get("gpu_name"), specs.get("num_gpus"), entry.get("score", 0))


def pick_dominant_dict(valid_entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The original's ``pick_dominant_dict``, to the letter (and with its crashes).

    Votes on ``(gpu_name, num_gpus, score)``; the most common key wins; a tie goes to the
    highest score, then to the key seen first. Returns the FIRST entry with the winning key,
    after setting its ``own_score`` to True in place. Callers that must not crash validate the
    entries first (see :func:`compat_stats_allocated`).
    """
    counter: Counter[tuple[Any, Any, Any]] = Counter()
    for entry in valid_entries:
        counter[_vote_key(entry)] += 1
    if not counter:
        return max(valid_entries, key=lambda d: d.get("score", 0))
    top_count = max(counter.values())
    top = [key for key, count in counter.items() if count == top_count]
    chosen = top[0] if len(top) == 1 else max(top, key=lambda key: key[2])
    for entry in valid_entries:
        if _vote_key(entry) == chosen:
            entry["own_score"] = True
            return entry
    raise AssertionError("unreachable: the chosen key came from these entries")  # pragma: no cover


@dataclass(frozen=True)
class StatsVote:
    """One uid's vote: the dominant entry and what the original cannot show about it."""

    uid: int
    entry: dict[str, Any]  # the original dict from one validator's run (parity)
    run_id: str  # the run the winning entry came from
    reporting: int  # distinct validators with a qualifying entry
    agreeing: int  # qualifying entries whose (gpu_name, num_gpus, score) equals the winner's
    spread: float  # max - min finite score among qualifying entries
    voters: tuple[str, ...] = ()  # validator hotkeys whose entries voted, first-seen order


_Vote = tuple[str, str, dict[str, Any]]  # (validator hotkey, run id, entry)

# Reasons for which the original's get_stats_allocated raises out of its final pass (so a
# v1.9.0 validator's sync_scores fails): reported as opencompute_network_stats_crashing_inputs.
CRASH_REASONS = ("uid_not_integer", "gpu_specs_null", "gpu_specs_invalid")


def score_problem(score: Any) -> str | None:
    """Why a published score is a bad value (None if it is a finite number >= 0)."""
    kind = type(score)
    if kind is int:
        return "score_negative" if score < 0 else None
    if kind is not float:
        return "score_not_number"  # bool included: True > 0 holds, but it is no score
    if score != score or score in _INFINITIES:
        return "score_not_finite"
    return "score_negative" if score < 0 else None


_INFINITIES = (math.inf, -math.inf)


def _specs_problem(specs: Any, qualifying: bool) -> str | None:
    """Why an entry's ``gpu_specs`` is a bad value; null is normal unless the entry votes."""
    if specs is None:
        return "gpu_specs_null" if qualifying else None
    if type(specs) is not dict:
        return "gpu_specs_invalid"
    name = specs.get("gpu_name")
    if name is not None and type(name) is not str:
        return "gpu_specs_invalid"
    count = specs.get("num_gpus")
    if type(count) is int and 0 <= count <= _MAX_GPUS:
        return None
    if count is None and not qualifying and "num_gpus" not in specs:
        return None
    return None if _count(count) is not None else "gpu_count_invalid"


def _read_stats(stats: Any, out: list[tuple[Any, dict[str, Any]]], notes: list[str]) -> None:
    """One run's step 2 of the original's ``get_stats_allocated``, in its exact order.

    An entry votes iff ``own_score is True``, ``score > 0`` and ``allocated is True`` (tested in
    that order, short-circuiting). Where the original raises inside its per-run ``try`` the rest
    of the run is not read (entries already added stay): a non-dict entry (``data.get``), a
    score that cannot be compared with 0 (``score > 0``), and, after a voting entry was added, a
    truthy non-dict ``gpu_specs`` (its trace line calls ``(gpu_specs or {}).get``). Every bad
    value reached is recorded, whether or not the uid is contested.
    """
    if not stats:
        return
    if not isinstance(stats, dict):  # stats.items() raises: the run adds nothing
        notes.append("stats_not_object")
        return
    items: Iterable[tuple[Any, Any]] = stats.items()
    if len(stats) > MAX_STATS_ENTRIES:
        notes.append("stats_too_many_entries")
        items = list(items)[:MAX_STATS_ENTRIES]
    for uid, data in items:
        if type(data) is not dict:
            notes.append("stats_entry_not_object")
            return
        score = data.get("score", 0)
        if type(score) is not int or score < 0:
            problem = score_problem(score)
            if problem is not None:
                notes.append(problem)
        positive = False
        if data.get("own_score") is True:
            try:
                positive = score > 0
            except Exception:  # noqa: BLE001 - the original's per-run except: stop reading the run
                return
        qualifying = positive and data.get("allocated") is True
        specs = data.get("gpu_specs")
        if specs is not None or qualifying:
            problem = _specs_problem(specs, qualifying)
            if problem is not None:
                notes.append(problem)
        if not qualifying:
            continue
        out.append((uid, data))
        if specs and type(specs) is not dict:  # the trace line's ``(gpu_specs or {}).get`` raises
            return


_Read = tuple[list[tuple[Any, dict[str, Any]]], list[str]]  # (voting (uid, entry) pairs, bad values)


class StatsMemo:
    """Per-run results of :func:`_read_stats`, reused while a run's stats stay the same.

    A refresh re-reads every validator run, but most runs' ``stats`` have not changed since the
    last one (validators rewrite them every ~20 minutes), and the strict reading reads the signed
    copy of the same content again. "The same" must mean the same JSON value, because ``True``
    and ``1`` or ``1`` and ``1.0`` read differently (``is True``, vote keys): a hit needs the
    same object, or ``==`` (which tells NaN apart) and equal orjson bytes (which tell
    ``True``/``1``, ``1``/``1.0``, ``0.0``/``-0.0`` and key order apart).
    """

    def __init__(self) -> None:
        self._runs: dict[str, list[tuple[Any, bytes, _Read]]] = {}
        self.hits = self.misses = 0

    def read(self, run_id: str, stats: Any) -> _Read:
        known = self._runs.setdefault(run_id, [])
        dumped: bytes | None = None
        for obj, blob, result in known:
            if obj is stats:
                self.hits += 1
                return result
            if dumped is None:
                dumped = _dumped(stats)
            if dumped and blob == dumped and obj == stats:
                self.hits += 1
                return result
        self.misses += 1
        pairs: list[tuple[Any, dict[str, Any]]] = []
        notes: list[str] = []
        _read_stats(stats, pairs, notes)
        result = (pairs, notes)
        blob = dumped if dumped is not None else _dumped(stats)
        if blob:
            known.insert(0, (stats, blob, result))
            del known[2:]  # the network's copy and the signed copy
        return result

    def retain(self, run_ids: Iterable[str]) -> None:
        """Forget runs no longer read."""
        keep = set(run_ids)
        for run_id in [r for r in self._runs if r not in keep]:
            del self._runs[run_id]


def _dumped(stats: Any) -> bytes:
    try:
        return orjson.dumps(stats)
    except (TypeError, orjson.JSONEncodeError):
        return b""  # not cacheable: read every time


def _collect(
    runs: Iterable[tuple[str, Any]],
    issues: Issues | None,
    run_ids: Sequence[str] | None,
    memo: StatsMemo | None = None,
) -> dict[str, list[_Vote]]:
    """Step 2 of the original: uid string -> [(validator, run id, entry)] in first-seen order."""
    aggregator: dict[str, list[_Vote]] = {}
    for index, (validator, stats) in enumerate(runs):
        run_id = run_ids[index] if run_ids is not None else ""
        if memo is not None and run_id:
            pairs, notes = memo.read(run_id, stats)
        else:
            pairs, notes = [], []
            _read_stats(stats, pairs, notes)
        for reason in notes:
            _note(issues, reason, run_id)
        for uid, data in pairs:
            aggregator.setdefault(uid, []).append((validator, run_id, data))
    return aggregator


def _contestable(entry: dict[str, Any]) -> str | None:
    """Why an entry would crash ``pick_dominant_dict`` (None if it would not)."""
    specs = entry.get("gpu_specs", {})
    if specs is None:
        return "gpu_specs_null"
    if not isinstance(specs, dict):
        return "gpu_specs_invalid"
    try:
        hash(_vote_key(entry))
    except TypeError:
        return "gpu_specs_invalid"
    return None


def _uid_int(uid: Any) -> int | str:
    """The uid as the original's ``int(uid_str)`` reads it, or why it cannot be exported."""
    try:
        value = int(uid)
    except (TypeError, ValueError, OverflowError):
        return "uid_not_integer"
    return value if 0 <= value <= MAX_UID else "uid_out_of_range"


def stats_votes(
    runs: Iterable[tuple[str, Any]],
    issues: Issues | None = None,
    run_ids: Sequence[str] | None = None,
    crashes: Counter[str] | None = None,
    memo: StatsMemo | None = None,
) -> dict[int, StatsVote]:
    """uid -> dominant entry plus agreement figures, over ``(validator_hotkey, stats)`` pairs.

    ``runs`` must be in the original's read order (``api.runs`` default, see
    :data:`exporters.subnet.reading.ORIGINAL_ORDER`), because first-seen order breaks ties.
    Where the original raises (a contested entry ``pick_dominant_dict`` cannot key, a
    non-integer uid), the entry or uid is skipped and the reason added to ``crashes``.
    """
    votes: dict[int, StatsVote] = {}
    for uid_str, pairs in _collect(runs, issues, run_ids, memo).items():
        pairs = [p for p in pairs if p[2].get("score", 0) != 0]
        if len(pairs) > 1:
            kept = []
            for pair in pairs:
                problem = _contestable(pair[2])
                if problem is None:
                    kept.append(pair)
                elif crashes is not None:
                    crashes[problem] += 1
            pairs = kept
        if not pairs:
            continue
        uid = _uid_int(uid_str)
        if isinstance(uid, str):
            if uid == "uid_not_integer" and crashes is not None:
                crashes[uid] += 1
            for run_id in dict.fromkeys(p[1] for p in pairs):
                _note(issues, uid, run_id)
            continue
        votes[uid] = _vote(uid, pairs)
    return votes


def _vote(uid: int, pairs: list[_Vote]) -> StatsVote:
    entries = [entry for _, _, entry in pairs]
    if len(entries) == 1:
        winner = entries[0]
        winner["own_score"] = True
        agreeing = 1
    else:
        winner = pick_dominant_dict(entries)
        chosen = _vote_key(winner)
        agreeing = sum(1 for entry in entries if _vote_key(entry) == chosen)
    run_id = next(p[1] for p in pairs if p[2] is winner)
    scores = [x for x in (_as_float(e.get("score", 0)) for e in entries) if math.isfinite(x)]
    spread = max(scores) - min(scores) if len(scores) > 1 else 0.0
    voters = tuple(dict.fromkeys(p[0] for p in pairs))
    return StatsVote(uid, winner, run_id, len(voters), agreeing, spread, voters)


def compat_stats_allocated(
    runs: Iterable[tuple[str, Any]], issues: Issues | None = None
) -> dict[int, dict[str, Any]]:
    """The original's ``get_stats_allocated`` result: ``{uid_int: winning entry dict}``.

    ``runs`` are ``(validator_hotkey, stats)`` pairs of trusted, verified validator runs in
    the original's read order. Where the original raises (``int("x")``, ``None.get``), this
    skips the entry and records why.
    """
    return {uid: vote.entry for uid, vote in stats_votes(runs, issues).items()}


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


@dataclass(frozen=True)
class UidStats:
    """What the network exporter publishes per uid from the dominant entry.

    ``score`` is None where the winning score is a bad value (non-finite, negative, not a
    number) and ``gpu_count`` None where the GPU count is not a sane integer: those series are
    left out rather than exported as ``+Inf`` or ``-8``. ``entry`` is the winning dict itself.
    """

    uid: int
    hotkey: str
    gpu_name: str
    gpu_count: float | None
    score: float | None
    reporting: int
    agreeing: int
    spread: float
    entry: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    run_id: str = field(default="", compare=False)
    voters: tuple[str, ...] = field(default=(), compare=False)


def stats_view(
    runs: Sequence[VerifiedRun],
    issues: Issues | None = None,
    crashes: Counter[str] | None = None,
    memo: StatsMemo | None = None,
) -> dict[int, UidStats]:
    """Dominant stats per uid over trusted validator runs (in read order), label-safe."""
    pairs = [(run.hotkey, run.payload.get("stats")) for run in runs]
    votes = stats_votes(pairs, issues, [run.run_id for run in runs], crashes, memo)
    out: dict[int, UidStats] = {}
    for uid, vote in sorted(votes.items()):
        entry = vote.entry
        specs = entry.get("gpu_specs")
        specs = specs if isinstance(specs, dict) else {}
        hotkey = entry.get("hotkey")
        if hotkey is not None and not is_ss58(hotkey):
            _note(issues, "hotkey_invalid", vote.run_id)
            hotkey = ""
        name = specs.get("gpu_name")
        score = entry.get("score", 0)
        out[uid] = UidStats(
            uid=uid,
            hotkey=hotkey or "",
            gpu_name=clean_label(name, issues, vote.run_id) if isinstance(name, str) else "",
            gpu_count=_count(specs.get("num_gpus")),
            score=None if score_problem(score) else float(score),
            reporting=vote.reporting,
            agreeing=vote.agreeing,
            spread=vote.spread,
            entry=entry,
            run_id=vote.run_id,
            voters=vote.voters,
        )
    return out


def _count(value: Any) -> float | None:
    """A GPU count if ``value`` is a sane non-negative integer, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return float(value) if 0 <= value <= _MAX_GPUS else None


# --- miner specs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MinerSpec:
    """A miner's self-published GPU claim, keyed by uid and hotkey."""

    uid: int
    hotkey: str
    gpu_name: str
    gpu_count: float


def newest_per_hotkey(runs: Iterable[VerifiedRun], issues: Issues | None = None) -> list[VerifiedRun]:
    """One run per hotkey, the newest; each older duplicate is recorded as ``duplicate_run``."""
    best: dict[str, VerifiedRun] = {}
    for run in runs:
        current = best.get(run.hotkey)
        if current is None:
            best[run.hotkey] = run
            continue
        older = run if run.timestamp <= current.timestamp else current
        _note(issues, "duplicate_run", older.run_id)
        if older is current:
            best[run.hotkey] = run
    return list(best.values())


EnvelopeLookup = Callable[[str], "VerifiedRun | None"]


# The keys the validator views read; the original's filters only return runs that have one.
CONTENT_KEYS = ("stats", "allocated_hotkeys", "penalized_hotkeys", "penalized_hotkeys_checklist")


def has_content(run: VerifiedRun) -> bool:
    """Whether a validator run carries anything the views read (else no reader returns it)."""
    return any(key in run.payload for key in CONTENT_KEYS)


def strict_runs(runs: Iterable[VerifiedRun], envelope_of: EnvelopeLookup | None = None) -> list[VerifiedRun]:
    """The strict reading's one run per hotkey: the hotkey's signed v2 envelope when
    ``envelope_of`` has one (wherever it is stored), else its newest verified run with content."""
    out = []
    for run in newest_per_hotkey(r for r in runs if has_content(r)):
        envelope = envelope_of(run.hotkey) if envelope_of is not None else None
        out.append(envelope if envelope is not None else run)
    return out


def gpu_claim(specs: Any) -> tuple[str, float] | str:
    """(gpu model, count) from a ``get_perf_info`` dict, or the bad-input reason.

    Reads ``specs.gpu.details[0].name`` and ``specs.gpu.count`` like the original's consumers.
    A miner without GPUs (count 0, no details) yields ``("", 0)``.
    """
    if specs is None or specs == "" or specs == {}:
        return "specs_missing"
    if not isinstance(specs, dict):
        return "specs_not_object"
    gpu = specs.get("gpu")
    if not isinstance(gpu, dict):
        return "specs_missing" if gpu is None else "specs_not_object"
    count = _count(gpu.get("count"))
    if count is None:
        return "gpu_count_invalid"
    details = gpu.get("details")
    name: Any = ""
    if isinstance(details, list) and details:
        first = details[0]
        name = first.get("name", "") if isinstance(first, dict) else None
    elif details is not None and not isinstance(details, list):
        name = None
    if not isinstance(name, str):
        return "specs_not_object"
    return name, count


def specs_view(
    runs: Iterable[VerifiedRun], uids: Mapping[str, int], issues: Issues | None = None
) -> list[MinerSpec]:
    """Specs of verified miner runs whose hotkey has a uid, newest run per hotkey.

    The original keys its result by enumeration index among running runs; here the key is the
    miner's uid from the metagraph (``uids``: hotkey -> uid).
    """
    out: list[MinerSpec] = []
    for run in newest_per_hotkey(runs, issues):
        uid = uids.get(run.hotkey)
        if uid is None:
            continue
        claim = gpu_claim(run.payload.get("specs"))
        if isinstance(claim, str):
            _note(issues, claim, run.run_id)
            continue
        name, count = claim
        out.append(MinerSpec(uid, run.hotkey, clean_label(name, issues, run.run_id), count))
    return sorted(out, key=lambda s: (s.uid, s.hotkey))


def _same_gpu_name(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def claim_mismatches(
    specs: Iterable[MinerSpec], stats: Mapping[int, UidStats]
) -> dict[tuple[int, str, str], bool]:
    """(uid, hotkey, field) -> True where the miner's claim disagrees with the dominant PoG result.

    Compared only where both sides are known and the PoG entry is about the same hotkey (a uid
    re-registered to another hotkey is not a mismatch). ``field`` is ``gpu_name`` or ``gpu_count``.
    """
    out: dict[tuple[int, str, str], bool] = {}
    for spec in specs:
        proven = stats.get(spec.uid)
        if proven is None or (proven.hotkey and proven.hotkey != spec.hotkey):
            continue
        if proven.gpu_name and spec.gpu_name:
            out[(spec.uid, spec.hotkey, "gpu_name")] = not _same_gpu_name(spec.gpu_name, proven.gpu_name)
        if proven.gpu_count is not None:
            out[(spec.uid, spec.hotkey, "gpu_count")] = spec.gpu_count != proven.gpu_count
    return out
