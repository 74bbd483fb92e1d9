"""Which hotkeys are "ours": declared in the network exporter's configuration, never inferred.

Why here and not from the miner exporter's ``opencompute_identity_info``: a miner host that is
down is exactly when its penalty must keep paging, and a down exporter exports nothing. The
network exporter (usually run twice, on other hosts) states the operator's hotkeys itself, so
alerts and dashboards select "our" series with a join on this one family::

    opencompute_network_our_hotkey_info{hotkey="5F...",source="config"} 1.0

``source`` is bounded (:data:`OUR_HOTKEY_SOURCES`): ``config`` (``--network.our-hotkeys``) and
``coldkey`` (every hotkey of a ``--network.our-coldkeys`` coldkey, read on chain by
:mod:`exporters.network.chain`); a new source adds its own value, never a new family.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from exporters.core.collector import SubCollector
from exporters.core.config import ConfigError, Flag

OUR_HOTKEY_SOURCES = ("config", "coldkey")


def ss58_list(flag_name: str, *, allow_empty: bool) -> Callable[[str], tuple[str, ...]]:
    """A converter for a comma-separated list of ss58 addresses (checksums verified, all errors at once)."""

    def convert(text: str) -> tuple[str, ...]:
        from bittensor_core import Keypair  # cheap (23 ms), but only needed when the flag is set

        entries = [part.strip() for part in text.split(",") if part.strip()]
        problems = []
        for entry in entries:
            try:
                Keypair(ss58_address=entry)
            except (ValueError, TypeError) as exc:
                problems.append(f"--{flag_name}: {entry!r} is not an ss58 address ({exc})")
        if not entries and not allow_empty:
            problems.append(f"--{flag_name}: expected at least one ss58 hotkey")
        if problems:
            raise ConfigError(problems)
        return tuple(dict.fromkeys(entries))

    return convert


def our_flags() -> list[Flag]:
    """``--network.our-hotkeys``: the operator's own miner and validator hotkeys."""
    return [
        Flag(
            "network.our-hotkeys",
            "Comma-separated hotkeys (ss58) of the miners and validators you operate. Exported as "
            "opencompute_network_our_hotkey_info so alerts about your own miners keep paging while "
            "their exporter is down.",
            default=(),
            convert=ss58_list("network.our-hotkeys", allow_empty=True),
            metavar="HOTKEY[,HOTKEY...]",
        ),
    ]


class OurHotkeys:
    """The declared hotkeys by source; other sources register theirs with :meth:`set`."""

    def __init__(self, declared: Iterable[str] = ()) -> None:
        self._by_source: dict[str, tuple[str, ...]] = {"config": tuple(declared)}

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> OurHotkeys:
        return cls(values.get("network_our_hotkeys") or ())

    def set(self, source: str, hotkeys: Iterable[str]) -> None:
        """Replace one source's hotkeys (the swap is atomic for readers)."""
        if source not in OUR_HOTKEY_SOURCES:
            raise ValueError(f"unknown source {source!r}; expected one of {OUR_HOTKEY_SOURCES}")
        self._by_source = {**self._by_source, source: tuple(hotkeys)}

    def items(self) -> list[tuple[str, str]]:
        """(hotkey, source) pairs, one per distinct pair."""
        return [(hk, src) for src, hks in self._by_source.items() for hk in dict.fromkeys(hks)]

    def hotkeys(self) -> set[str]:
        return {hk for hk, _ in self.items()}


class OursCollector(SubCollector):
    """One ``opencompute_network_our_hotkey_info`` series per declared hotkey and source."""

    name = "ours"

    def __init__(self, ours: OurHotkeys) -> None:
        self.ours = ours

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "opencompute_network_our_hotkey_info",
            "A hotkey this operator runs (always 1), declared in the network exporter's "
            "configuration; join on hotkey to select your own miners and validators.",
            labels=["hotkey", "source"],
        )
        for hotkey, source in self.ours.items():
            info.add_metric([hotkey, source], 1.0)
        yield info
