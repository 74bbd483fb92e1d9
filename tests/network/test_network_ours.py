"""--network.our-hotkeys: the operator's hotkeys declared in the network exporter, not its miners."""

from __future__ import annotations

import pytest
from bittensor_core import Keypair

from exporters.core.config import ConfigError
from exporters.network.ours import OurHotkeys, OursCollector, ss58_list

ALICE = Keypair.create_from_uri("//Alice").ss58_address
BOB = Keypair.create_from_uri("//Bob").ss58_address


def test_declared_hotkeys_are_exported_once_each_with_their_source():
    ours = OurHotkeys([ALICE, BOB, ALICE])
    (family,) = list(OursCollector(ours).collect())
    assert family.name == "opencompute_network_our_hotkey_info"
    assert sorted((s.labels["hotkey"], s.labels["source"], s.value) for s in family.samples) == sorted(
        [(ALICE, "config", 1.0), (BOB, "config", 1.0)]
    )


def test_another_source_adds_series_in_the_same_family():
    ours = OurHotkeys([ALICE])
    ours.set("coldkey", [BOB])
    assert ours.hotkeys() == {ALICE, BOB}
    assert ("coldkey" in {src for _, src in ours.items()}) and len(ours.items()) == 2


def test_a_bad_address_is_a_config_error_naming_the_flag():
    convert = ss58_list("network.our-hotkeys", allow_empty=True)
    assert convert(f"{ALICE}, {BOB}") == (ALICE, BOB)
    assert convert("") == ()
    with pytest.raises(ConfigError) as err:
        convert(f"{ALICE},not-a-key")
    assert err.value.problems == [err.value.problems[0]] and "--network.our-hotkeys" in err.value.problems[0]
