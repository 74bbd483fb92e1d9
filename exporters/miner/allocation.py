"""Is this miner allocated, and by whom: the network's rule, checked from the miner's side.

The original miner asks ``get_allocated_hotkeys`` every 75 blocks (about 15 minutes): it is
allocated when a trusted validator's verified run lists its hotkey in ``allocated_hotkeys``.
:class:`AllocationSource` applies exactly the rule of the network exporter, with its code:

1. the validator set comes from :class:`~exporters.subnet.trust.ValidatorResolver` (chain, else
   the last good metagraph on disk, else the allowlist);
2. ONE ``read_runs("validator", netuid)`` per refresh;
3. :func:`~exporters.subnet.reading.read_network`, the network's reading (the original's v1
   signature check on the top-level config, every run counted, no age rule), then
   :func:`~exporters.subnet.views.allocated_hotkeys`, as the network view does. So the miner
   is "allocated" exactly when the original's ``get_allocated_hotkeys`` lists it.

Several trusted validators may claim the same miner (the original concatenates their lists).
The one reported is the claimant with the highest stake, ties broken by the lexicographically
smallest hotkey (with an allowlist, stakes are unknown: the smallest hotkey). The count of
claimants is exported too.

The refresh runs in a background :class:`~exporters.core.runtime.Loop`, never on a scrape. A
failed refresh (store or chain unreachable, or no validator set at all) keeps the last good
allocation and only marks ``opencompute_miner_allocation_refresh_success 0``. Until the first
refresh succeeds the allocation is unknown: the allocation series are absent and the publisher
leaves ``allocated`` out of its payload rather than claim "not allocated".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.state.base import StateStore, StoreError
from exporters.subnet import reading, views
from exporters.subnet.trust import ValidatorResolver, Verifier

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 900.0  # the original miner checks every 75 blocks (~15 min)


@dataclass(frozen=True)
class Allocation:
    """The outcome of one successful refresh: the allocating validator (or None) and all claimants."""

    validator_hotkey: str | None
    claimants: tuple[str, ...] = ()  # trusted validators listing this miner, sorted

    @property
    def allocated(self) -> bool:
        return self.validator_hotkey is not None


def choose_validator(claimants: set[str] | frozenset[str], stakes: Mapping[str, float] | None) -> str | None:
    """The claimant with the highest stake, then the smallest hotkey; None without claimants."""
    if not claimants:
        return None
    known = stakes or {}
    return min(claimants, key=lambda hotkey: (-known.get(hotkey, 0.0), hotkey))


class AllocationSource:
    """Owns the last good :class:`Allocation`; ``refresh()`` runs off the scrape path."""

    def __init__(
        self,
        store: StateStore,
        resolver: ValidatorResolver,
        hotkey: str,
        *,
        netuid: int = 27,
        max_run_age: float = 86400.0,
        clock: Callable[[], float] = time.time,
        verifier: Verifier | None = None,
    ) -> None:
        self.store = store
        self.resolver = resolver
        self.hotkey = hotkey
        self.netuid = netuid
        self.max_run_age = max_run_age
        self._clock = clock
        self._verifier = verifier
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._v1 = reading.V1Memo()  # v1 verdicts reused across refreshes
        self._current: Allocation | None = None
        self._success = False
        self._last_success = 0.0

    @property
    def current(self) -> Allocation | None:
        """The last good allocation; None until a refresh has succeeded (unknown)."""
        return self._current

    def validator_hotkey(self) -> str | None:
        """The allocating validator's hotkey, None when not allocated or not known yet."""
        current = self._current
        return current.validator_hotkey if current is not None else None

    def refresh(self) -> bool:
        """Read, verify and judge the validator runs once; returns success, never raises."""
        with self._refresh_lock:
            try:
                allocation = self._read()
            except StoreError as exc:
                log.warning("allocation refresh failed: state store %s: %s; last kept", exc.reason, exc)
                allocation = None
            except Exception:
                log.exception("allocation refresh failed; keeping the last one")
                allocation = None
            with self._lock:
                self._success = allocation is not None
                if allocation is None:
                    return False
                previous, self._current = self._current, allocation
                self._last_success = self._clock()
            if previous is None or previous.validator_hotkey != allocation.validator_hotkey:
                by = allocation.validator_hotkey
                state = f"allocated by {by}" if by else "not allocated"
                log.info(
                    "allocation: %s (%d trusted validator(s) claim hotkey %s)",
                    state,
                    len(allocation.claimants),
                    self.hotkey,
                )
            return True

    def _read(self) -> Allocation | None:
        vset = self.resolver.resolve(self.netuid)
        if vset.source == "none":
            log.warning(
                "allocation refresh failed: no validator set (chain unreachable, no cached metagraph, "
                "no allowlist); keeping the last one"
            )
            return None
        records = self.store.read_runs("validator", self.netuid)
        self._v1.retain(records)
        runs = reading.read_network(records, vset.validators, memo=self._v1).trusted
        claimants = views.allocated_hotkeys(runs).get(self.hotkey, set())
        return Allocation(choose_validator(claimants, vset.stakes), tuple(sorted(claimants)))

    def collector(self) -> SubCollector:
        """The allocation series (part of the ``miner`` collector)."""
        return AllocationCollector(self)

    def status(self) -> tuple[Allocation | None, bool, float]:
        """(last good allocation, latest attempt succeeded, unix time of the last success or 0)."""
        with self._lock:
            return self._current, self._success, self._last_success


class AllocationCollector(SubCollector):
    """The miner's allocation as seen by trusted validators. E.g.::

    opencompute_miner_allocated 1.0
    opencompute_miner_allocation_info{validator_hotkey="5F..."} 1.0
    opencompute_miner_allocation_claims 1.0
    opencompute_miner_allocation_refresh_success 1.0
    opencompute_miner_allocation_last_refresh_timestamp_seconds 1.7e+09
    """

    name = "miner"

    def __init__(self, source: AllocationSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        current, success, last = self._source.status()
        if current is not None:
            yield GaugeMetricFamily(
                "opencompute_miner_allocated",
                "Whether a trusted validator's verified run lists this miner's hotkey in allocated_hotkeys "
                "(1) or not (0). Cached: as of the last successful allocation refresh.",
                value=1.0 if current.allocated else 0.0,
            )
            if current.validator_hotkey is not None:
                info = GaugeMetricFamily(
                    "opencompute_miner_allocation_info",
                    "The trusted validator holding the allocation (highest stake among the claimants).",
                    labels=["validator_hotkey"],
                )
                info.add_metric([current.validator_hotkey], 1.0)
                yield info
            yield GaugeMetricFamily(
                "opencompute_miner_allocation_claims",
                "Trusted validators whose verified runs list this miner as allocated.",
                value=float(len(current.claimants)),
            )
        yield GaugeMetricFamily(
            "opencompute_miner_allocation_refresh_success",
            "Whether the latest allocation refresh (validator set, state-store read, verification) "
            "succeeded; on failure the last good allocation is kept.",
            value=1.0 if success else 0.0,
        )
        yield GaugeMetricFamily(
            "opencompute_miner_allocation_last_refresh_timestamp_seconds",
            "Unix time of the last successful allocation refresh (0 = never).",
            value=last,
        )
