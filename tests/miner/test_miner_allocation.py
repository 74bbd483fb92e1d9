"""The miner's allocation: the network exporter's rule over validators' signed runs in a real SQLite store.

Validators publish with real sr25519 dev keys through the real Publisher; the miner exporter is
built from its flags (``--hotkey.uri=//miner9``) and only the chain is replaced, by a static
metagraph (``StaticValidatorSource``, the same one the demo and the network tests use).
"""

from __future__ import annotations

import logging
import time

import psutil
import pytest
from fakes.nvml import FakeNvml
from miner_helpers import (
    PINNED_HOST,
    flag_values,
    metagraph,
    publish_validator_run,
    tamper_allocation,
    value,
)

from exporters.core.config import ConfigError
from exporters.core.keys import keypair_from_uri
from exporters.miner.allocation import choose_validator
from exporters.miner.cli import build_exporter

MINER = keypair_from_uri("//miner9").ss58_address
OTHER_MINER = keypair_from_uri("//miner3").ss58_address
V0 = keypair_from_uri("//validator0").ss58_address
V1 = keypair_from_uri("//validator1").ss58_address
STRANGER = keypair_from_uri("//stranger").ss58_address
LOW_STAKE = keypair_from_uri("//validator-lowstake").ss58_address


NO_CHAIN = None
DEFAULT_CHAIN = "default"


def miner(tmp_path, source=DEFAULT_CHAIN, *argv, clock=time.time):
    """The miner exporter as ``//miner9`` over the store at tmp_path/state.db; loops not started.

    ``source``: the chain (default: V0 5e4, V1 9e4 and a low-stake validator), or NO_CHAIN for
    ``--subtensor.network=none`` (the real flag path: no chain source at all).
    """
    values = flag_values(
        "--hotkey.uri=//miner9",
        f"--state.sqlite-path={tmp_path / 'state.db'}",
        f"--publish.outbox-path={tmp_path / 'outbox-miner.db'}",
        f"--miner.state-dir={tmp_path / 'metagraph'}",
        *(["--subtensor.network=none"] if source is NO_CHAIN else []),
        *argv,
    )
    if source == DEFAULT_CHAIN:
        source = metagraph((V0, 5.0e4), (V1, 9.0e4), (LOW_STAKE, 5.0e2), miners=(MINER, OTHER_MINER))
    return build_exporter(
        values,
        nvml=FakeNvml([]),
        psutil=psutil,
        host_reader=lambda: PINNED_HOST,
        validator_source=source,
        clock=clock,
    )


def publish(tmp_path, uri, allocated, **kwargs):
    return publish_validator_run(tmp_path / "state.db", tmp_path, uri, allocated, **kwargs)


def allocation_metrics(parts):
    names = ("allocated", "allocation_claims", "allocation_refresh_success")
    got = {name: value(parts, f"opencompute_miner_{name}") for name in names}
    got["last_refresh"] = value(parts, "opencompute_miner_allocation_last_refresh_timestamp_seconds")
    return got


def test_a_trusted_validators_verified_run_allocates_the_miner_to_that_validator(tmp_path):
    publish(tmp_path, "//validator0", [OTHER_MINER, MINER])
    parts = miner(tmp_path)
    assert "allocation-refresh" in [loop.name for loop in parts.loops]
    assert parts.allocation.refresh()
    got = allocation_metrics(parts)
    assert got["allocated"] == 1 and got["allocation_claims"] == 1 and got["allocation_refresh_success"] == 1
    assert got["last_refresh"] == pytest.approx(time.time(), abs=60)
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V0) == 1
    parts.publisher.close()


def test_an_envelope_only_validator_run_does_not_allocate_as_the_original_reads_only_the_top_level(
    tmp_path,
):
    # In envelope mode the list exists only inside the signed v2 payload; get_allocated_hotkeys
    # (and so the original miner) reads config.allocated_hotkeys, which this run does not have.
    publish(tmp_path, "//validator0", [MINER], mode="envelope")
    parts = miner(tmp_path)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocated") == 0
    parts.publisher.close()


def test_a_run_from_an_untrusted_signer_does_not_allocate(tmp_path):
    publish(tmp_path, "//stranger", [MINER])  # valid signatures, but not a registered validator
    publish(tmp_path, "//validator-lowstake", [MINER])  # permitted, but below --miner.validator-min-stake
    publish(tmp_path, "//validator0", [OTHER_MINER])  # trusted, lists someone else
    parts = miner(tmp_path)
    assert parts.allocation.refresh()
    got = allocation_metrics(parts)
    assert (got["allocated"], got["allocation_claims"], got["allocation_refresh_success"]) == (0, 0, 1)
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=STRANGER) is None
    parts.publisher.close()


def test_a_min_stake_of_zero_trusts_the_low_stake_validator(tmp_path):
    publish(tmp_path, "//validator-lowstake", [MINER])
    parts = miner(tmp_path, DEFAULT_CHAIN, "--miner.validator-min-stake=0")
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=LOW_STAKE) == 1
    parts.publisher.close()


def test_a_run_changed_after_signing_allocates_as_it_does_for_the_original(tmp_path):
    # The v1 signature covers only the run id: the original counts whatever the config says now.
    publish(tmp_path, "//validator0", [OTHER_MINER])
    tamper_allocation(tmp_path / "state.db", V0, [OTHER_MINER, MINER])
    parts = miner(tmp_path)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocated") == 1
    assert value(parts, "opencompute_miner_allocation_claims") == 1
    parts.publisher.close()


def test_an_old_validator_run_still_allocates_as_the_original_has_no_age_rule(tmp_path):
    publish(tmp_path, "//validator0", [MINER])
    later = time.time() + 7200
    parts = miner(tmp_path, DEFAULT_CHAIN, "--miner.max-run-age=1h", clock=lambda: later)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocated") == 1
    parts.publisher.close()


def test_a_validator_that_drops_the_miner_ends_the_allocation(tmp_path):
    publish(tmp_path, "//validator0", [MINER])
    parts = miner(tmp_path)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocated") == 1
    publish(tmp_path, "//validator0", [OTHER_MINER])  # a newer signed run (higher seq) without us
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocated") == 0
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V0) is None
    parts.publisher.close()


def test_several_claimants_report_the_highest_stake_and_count_every_claim(tmp_path):
    publish(tmp_path, "//validator0", [MINER])
    publish(tmp_path, "//validator1", [MINER])
    parts = miner(tmp_path)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V1) == 1  # 9e4 > 5e4
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V0) is None
    assert value(parts, "opencompute_miner_allocation_claims") == 2
    parts.publisher.close()


def test_equal_or_unknown_stakes_fall_back_to_the_smallest_hotkey():
    first, second = sorted([V0, V1])
    assert choose_validator({second, first}, {first: 1.0, second: 1.0}) == first
    assert choose_validator({second, first}, None) == first  # allowlist: stakes unknown
    assert choose_validator({first, second}, {second: 2.0, first: 1.0}) == second
    assert choose_validator(set(), {first: 1.0}) is None


def test_an_unreachable_store_keeps_the_last_good_allocation_and_reports_the_failure(tmp_path):
    state = tmp_path / "store"
    publish_validator_run(state / "state.db", tmp_path, "//validator0", [MINER])
    parts = miner(tmp_path, DEFAULT_CHAIN, f"--state.sqlite-path={state / 'state.db'}")
    assert parts.allocation.refresh()
    first = allocation_metrics(parts)
    parts.allocation.store.close()
    state.rename(tmp_path / "moved")  # the database file is gone: sqlite cannot open it
    try:
        assert not parts.allocation.refresh()
        got = allocation_metrics(parts)
        assert got["allocation_refresh_success"] == 0
        assert (got["allocated"], got["allocation_claims"]) == (1, 1)
        assert got["last_refresh"] == first["last_refresh"]
        assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V0) == 1
    finally:
        (tmp_path / "moved").rename(state)
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocation_refresh_success") == 1
    parts.publisher.close()


def test_without_a_chain_the_cached_metagraph_keeps_trust_and_without_any_source_the_refresh_fails(
    tmp_path,
):
    publish(tmp_path, "//validator0", [MINER])
    source = metagraph((V0, 5.0e4), miners=(MINER,))
    parts = miner(tmp_path, source)
    assert parts.allocation.refresh()  # writes the metagraph cache to --miner.state-dir
    source.fail = True
    assert parts.allocation.refresh()  # chain down: the cached metagraph still says who is trusted
    assert value(parts, "opencompute_miner_allocated") == 1
    parts.publisher.close()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    publish(fresh, "//validator0", [MINER])
    parts = miner(fresh, NO_CHAIN)  # no chain, no cached metagraph, no allowlist
    assert parts.allocation.resolver.source is None
    assert not parts.allocation.refresh()
    got = allocation_metrics(parts)
    assert got == {
        "allocated": None,  # unknown, so absent: never a made-up 0
        "allocation_claims": None,
        "allocation_refresh_success": 0,
        "last_refresh": 0,
    }
    parts.publisher.close()


def test_an_allowlist_alone_decides_trust_when_no_metagraph_is_known(tmp_path):
    publish(tmp_path, "//validator0", [MINER])
    publish(tmp_path, "//stranger", [MINER])
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(f"# trusted\n{V0}\n")
    parts = miner(tmp_path, NO_CHAIN, f"--miner.validator-allowlist={allowlist}")
    assert parts.allocation.refresh()
    assert value(parts, "opencompute_miner_allocation_info", validator_hotkey=V0) == 1
    assert value(parts, "opencompute_miner_allocation_claims") == 1  # the stranger does not count
    parts.publisher.close()


def test_a_scrape_never_reads_the_store(tmp_path):
    publish(tmp_path, "//validator0", [MINER])
    parts = miner(tmp_path)
    store = parts.allocation.store
    before = store.request_counts().get("read", 0)
    for _ in range(3):
        list(parts.exporter.registry.collect())
    assert store.request_counts().get("read", 0) == before
    assert parts.allocation.refresh()
    assert store.request_counts()["read"] == before + 1  # one read_runs per refresh
    parts.publisher.close()


def test_without_an_identity_the_allocation_is_absent_and_the_log_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="exporters.miner.cli"):
        parts = build_exporter(
            flag_values(), nvml=FakeNvml([]), psutil=psutil, host_reader=lambda: PINNED_HOST
        )
    assert parts.allocation is None
    assert "allocation-refresh" not in [loop.name for loop in parts.loops]
    assert value(parts, "opencompute_miner_allocation_refresh_success") is None
    assert value(parts, "opencompute_miner_allocated") is None
    assert "allocation not reported" in caplog.text


def test_allocation_flags_have_defaults_env_vars_and_the_file_flag_is_gone(tmp_path):
    v = flag_values()
    assert v["miner_allocation_refresh_interval"] == 900.0
    assert (v["miner_validator_min_stake"], v["miner_max_run_age"], v["miner_chain_timeout"]) == (
        1.0e4,
        86400.0,
        30.0,
    )
    assert v["subtensor_network"] == "finney" and v["miner_state_dir"] == "~/.opencompute/miner"
    env = {
        "OPENCOMPUTE_MINER_ALLOCATION_REFRESH_INTERVAL": "5m",
        "OPENCOMPUTE_MINER_VALIDATOR_ALLOWLIST": str(tmp_path / "validators.txt"),
    }
    (tmp_path / "validators.txt").write_text("")
    v = flag_values(environ=env)
    assert v["miner_allocation_refresh_interval"] == 300.0
    assert v["miner_validator_allowlist"] == str(tmp_path / "validators.txt")
    with pytest.raises(ConfigError):
        flag_values("--miner.allocation-refresh-interval=0s")
    with pytest.raises(SystemExit):
        flag_values("--miner.allocation-file=/tmp/allocation_key")


def test_the_miner_and_the_network_exporter_share_every_trust_flag():
    from exporters.miner.cli import flags as miner_flags
    from exporters.network.cli import flags as network_flags

    def trust(flagset, prefix):
        names = ("chain-timeout", "max-run-age", "validator-min-stake", "validator-allowlist")
        out = {}
        for flag in flagset.flags:
            suffix = flag.name.removeprefix(prefix)
            if flag.name.startswith("subtensor.") or suffix in names:
                out[suffix] = (flag.help, flag.default)
        return out

    miner, network = trust(miner_flags(), "miner."), trust(network_flags(), "network.")
    assert len(miner) == 6
    assert miner == network
