"""Background refresh: one read per role, incremental merges, failures that keep the last snapshot."""

from __future__ import annotations

import threading
import time

import pytest
from network_helpers import key, record

from exporters.core.state.base import StoreUnavailable
from exporters.network import refresh as refresh_module
from exporters.network.refresh import DEFAULT_OVERLAP, NetworkRefresher, Snapshot, TimedRefresh
from exporters.network.simulate import MemoryStateStore, seed_network
from exporters.subnet.trust import MetagraphCache, ValidatorResolver
from exporters.subnet.views import BAD_INPUT_REASONS

DAY = 86400.0


class SpyStore:
    """Wraps a store and records every read_runs call (role, updated_since)."""

    def __init__(self, inner: MemoryStateStore) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.entity_project = inner.entity_project
        self.reads: list[tuple[str, float | None]] = []
        self.gate: threading.Event | None = None

    def read_runs(self, role, netuid, **kw):
        self.reads.append((role, kw.get("updated_since")))
        if self.gate is not None:
            self.gate.wait(5)
        return self.inner.read_runs(role, netuid, **kw)

    def request_count(self) -> int:
        return self.inner.request_count()


def make(store, resolver, clock, **kw) -> NetworkRefresher:
    return NetworkRefresher(store, resolver, clock=clock, timer=lambda: 0.0, **kw)


def test_each_refresh_reads_its_role_once_and_derives_every_view(store, network, resolver, clock):
    spy = SpyStore(store)
    r = make(spy, resolver, clock)
    assert r.refresh("validator") and spy.reads == [("validator", None)]
    snap = r.snapshot
    assert set(snap.allocation.claims) == network.allocated
    assert set(snap.penalties.listed) == network.penalized
    assert snap.stats and all(uid in network.pog for uid in snap.stats)
    assert r.refresh("miner") and spy.reads[-1] == ("miner", None) and len(spy.reads) == 2
    assert {s.hotkey for s in r.snapshot.specs} <= set(network.miner_hotkeys)
    assert len(r.snapshot.specs) == len(network.miner_keys) - len(network.tampered)


def test_later_refreshes_ask_only_for_recently_updated_runs_and_merge_them(store, network, resolver, clock):
    spy = SpyStore(store)
    r = make(spy, resolver, clock, full_resync_interval=6 * 3600)
    r.refresh("validator")
    r.refresh("miner")
    first = clock()
    clock.advance(1800)
    victim = network.miner_keys[0]
    store.publish("miner", victim.ss58_address, {"hotkey": "tampered-later"})  # breaks its signature
    r.refresh("miner")
    assert spy.reads[-1] == ("miner", first - DEFAULT_OVERLAP)
    assert r.snapshot.rejected[("miner", "tampered")] == len(network.tampered) + 1
    assert len(r.snapshot.specs) == len(network.miner_keys) - len(network.tampered) - 1


def test_a_periodic_full_read_drops_runs_deleted_from_the_store(store, network, resolver, clock):
    spy = SpyStore(store)
    r = make(spy, resolver, clock, full_resync_interval=3600)
    r.refresh("validator")
    gone = network.run_ids[network.validator_hotkeys[0]]
    del store._runs[gone]  # deleted upstream: an incremental read cannot see that
    clock.advance(600)
    r.refresh("validator")
    assert spy.reads[-1][1] is not None
    assert r.snapshot.runs[("validator", "v2")] == 4
    clock.advance(3600)
    r.refresh("validator")
    assert spy.reads[-1][1] is None
    assert r.snapshot.runs[("validator", "v2")] == 3


def test_when_the_store_is_unreachable_the_snapshot_is_kept_and_success_drops(
    store, network, resolver, clock
):
    r = make(store, resolver, clock)
    assert r.refresh("validator")
    before = r.snapshot
    store.fail = True
    clock.advance(300)
    assert not r.refresh("validator")
    after = r.snapshot
    assert after.allocation is before.allocation and after.stats is before.stats
    status = after.status["validator"]
    assert status.success is False
    assert status.last_success == before.status["validator"].last_success  # so the age keeps growing
    assert dict(status.failures) == {"unavailable": 1}
    store.fail = False
    assert r.refresh("validator") and r.snapshot.status["validator"].success


def test_when_the_chain_is_unreachable_the_last_good_metagraph_keeps_validators_trusted(
    store, network, tmp_path, clock
):
    source = network.source()
    r = make(store, ValidatorResolver(source, MetagraphCache(tmp_path)), clock)
    r.refresh("validator")
    source.fail = True
    restarted = make(store, ValidatorResolver(source, MetagraphCache(tmp_path)), clock)
    restarted.refresh("validator")
    assert restarted.snapshot.trust.source == "cache"
    assert restarted.snapshot.runs[("validator", "v2")] == 4


def test_without_chain_or_cache_the_allowlist_decides_and_uids_come_from_signed_stats(
    store, network, tmp_path, clock
):
    source = network.source()
    source.fail = True
    allow = tmp_path / "allow"
    allow.write_text("\n".join(network.validator_hotkeys[:2]))
    resolver = ValidatorResolver(source, MetagraphCache(tmp_path / "s"), allowlist_path=str(allow))
    r = make(store, resolver, clock)
    r.refresh("validator")
    r.refresh("miner")
    snap = r.snapshot
    assert snap.trust.source == "allowlist"
    assert snap.runs[("validator", "v2")] == 2
    assert snap.rejected[("validator", "untrusted_validator")] == 3
    assert snap.specs and all(snap.stats[s.uid].hotkey == s.hotkey for s in snap.specs)


def test_a_refresh_that_hangs_is_abandoned_at_the_timeout_and_its_late_result_discarded(
    store, network, resolver, clock
):
    spy = SpyStore(store)
    r = make(spy, resolver, clock)
    spy.gate = threading.Event()
    tick = TimedRefresh(r, "validator", timeout=0.05)
    tick()
    assert dict(r.snapshot.status["validator"].failures) == {"timeout": 1}
    tick()  # the first worker is still blocked
    assert dict(r.snapshot.status["validator"].failures) == {"timeout": 1, "busy": 1}
    spy.gate.set()
    tick._worker.join(5)
    assert r.snapshot.runs == {}  # the late result was thrown away
    spy.gate = None
    tick()
    assert r.snapshot.status["validator"].success and r.snapshot.runs[("validator", "v2")] == 4


def test_an_aggregation_bug_keeps_the_previous_snapshot(store, network, resolver, clock, monkeypatch):
    r = make(store, resolver, clock)
    r.refresh("validator")
    before = r.snapshot

    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(refresh_module.views, "stats_view", boom)
    assert not r.refresh("validator")
    assert r.snapshot.stats is before.stats and r.snapshot.status["validator"].failures == {"error": 1}


def test_runs_past_the_max_age_still_count_for_the_network_and_are_stale_for_the_strict_reading(
    store, network, resolver, clock
):
    r = make(store, resolver, clock, max_run_age=DAY)
    r.refresh("validator")
    assert r.snapshot.rejected.get(("validator", "stale"), 0) == 0
    claims = dict(r.snapshot.allocation.claims)
    assert claims and r.snapshot.divergence.counts["allocation"] == 0
    clock.advance(2 * DAY)  # the chain still lists them as validators, but nobody re-signed
    r.refresh("validator")
    assert r.snapshot.rejected[("validator", "stale")] == 5  # 4 trusted + the low-stake one
    assert dict(r.snapshot.allocation.claims) == claims  # the original has no age rule
    div = r.snapshot.divergence
    assert div.counts["allocation"] == len(claims)  # the strict reading allocates nobody
    assert set(div.validators) == set(network.validator_hotkeys)
    assert all(reasons == ("stale",) for reasons in div.validators.values())
    assert all(ts < clock() - DAY for _, ts in r.snapshot.validators.values())


def test_trust_outcomes_of_the_simulated_network_are_reported(store, network, resolver, clock):
    r = make(store, resolver, clock)
    r.refresh("validator")
    r.refresh("miner")
    snap = r.snapshot
    assert snap.rejected[("validator", "untrusted_validator")] == 1
    assert snap.validators[network.low_stake_validator] == (False, clock())
    assert snap.rejected[("miner", "tampered")] == len(network.tampered)
    assert snap.runs[("miner", "v1_only")] == len(network.v1_only)
    assert any(bad for (_, hk, _), bad in snap.mismatches.items() if hk in network.overclaiming)


def test_stopped_miner_runs_are_not_used(store, network, resolver, clock):
    r = make(store, resolver, clock)
    r.refresh("validator")
    store.set_state("miner", network.miner_hotkeys[0], "finished")
    r.refresh("miner")
    assert r.snapshot.rejected[("miner", "not_running")] == 1
    assert network.miner_hotkeys[0] not in {s.hotkey for s in r.snapshot.specs}


def _hostile_runs(now: float) -> list:
    v0, v1 = "//validator0", "//validator1"
    contested = {
        "gpu_specs": {"gpu_name": "H100", "num_gpus": 8},
        "score": 50,
        "own_score": True,
        "allocated": True,
    }
    return [
        record(
            v0,
            "validator",
            {
                "stats": {
                    "abc": dict(contested),
                    "107": {"gpu_specs": None, "score": 60, "own_score": True, "allocated": True},
                    "110": {**contested, "gpu_specs": {"gpu_name": "\u202e\x00" + "Z" * 300, "num_gpus": 1}},
                    "108": "junk",  # the original stops reading this run here (data.get raises)
                    "109": {"score": [1], "own_score": True, "allocated": True},  # never read
                },
                "allocated_hotkeys": "not a list",
                "penalized_hotkeys": [None, {"hotkey": 3}],
            },
            run_id="hostile0",
            now=now,
            created_at=now,
        ),
        record(
            v1,
            "validator",
            {
                "stats": {
                    "107": dict(contested),
                    "111": {"score": "high", "own_score": True, "allocated": True},
                }
            },
            run_id="hostile1",
            now=now,
            created_at=now,
        ),
        record("//validator3", "validator", {"stats": ["x"]}, run_id="hostile2", now=now, created_at=now - 1),
        record("//validator2", "validator", {"huge": "x" * 600_000}, run_id="hostile3", now=now),
        record("//miner0", "miner", {"specs": {"gpu": {"count": "eight"}}}, run_id="hostile4", now=now),
        record("//miner1", "miner", {}, run_id="hostile5", now=now),
        record("//miner1", "miner", {"specs": ""}, run_id="hostile6", now=now - 10, signed_at=now - 10),
    ]


def test_hostile_input_never_crashes_a_refresh_and_is_counted_once_per_run_version(
    store, network, resolver, clock
):
    r = make(store, resolver, clock)
    store.put_many(_hostile_runs(clock.advance(10)))  # newer than the seeded runs of the same keys
    assert r.refresh("validator") and r.refresh("miner")
    bad = r.snapshot.bad_input_total
    for reason in (
        "uid_not_integer",
        "gpu_specs_null",
        "stats_entry_not_object",
        "score_not_number",
        "label_value_invalid",
        "allocated_hotkeys_not_list",
        "penalized_entry_invalid",
        "stats_not_object",
        "gpu_count_invalid",
        "specs_missing",
        "duplicate_run",
    ):
        assert bad[reason] >= 1, reason
    assert r.snapshot.rejected[("validator", "oversized")] == 1
    assert set(bad) == set(BAD_INPUT_REASONS)
    assert r.snapshot.stats[107].score == 50  # the null-specs vote was dropped, the other kept
    assert r.snapshot.stats[107].reporting == 1
    # the original raises on both (int("abc"), None.get in pick_dominant_dict): v1.9.0 validators fail
    assert r.snapshot.crashes == {"uid_not_integer": 1, "gpu_specs_null": 1, "gpu_specs_invalid": 0}
    first = dict(bad)
    clock.advance(60)
    r.refresh("validator")
    r.refresh("miner")
    assert dict(r.snapshot.bad_input_total) == first  # same run versions: not counted again
    totals = dict(r.snapshot.rejections_total)
    r.refresh("validator")
    assert dict(r.snapshot.rejections_total) == totals


def test_a_store_returning_garbage_instead_of_records_does_not_crash(store, resolver, clock):
    class Junk(SpyStore):
        def read_runs(self, role, netuid, **kw):
            return [None, "x", 42]

    r = make(Junk(store), resolver, clock)
    assert r.refresh("validator")
    assert r.snapshot.runs == {}


def test_the_snapshot_is_immutable(store, network, resolver, clock):
    r = make(store, resolver, clock)
    r.refresh("validator")
    snap = r.snapshot
    with pytest.raises(TypeError):
        snap.stats[1] = None  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.netuid = 1  # type: ignore[misc]
    assert isinstance(Snapshot.empty(27).status["miner"].success, bool)


def test_the_loops_refresh_in_the_background_on_their_own_cadence(store, network, resolver, clock):
    from exporters.core.runtime import Loop

    r = make(store, resolver, clock)
    loops = [
        Loop("v", 0.05, TimedRefresh(r, "validator", 2.0)),
        Loop("m", 60.0, TimedRefresh(r, "miner", 2.0)),
    ]
    for loop in loops:
        loop.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and store.request_counts().get("read", 0) < 4:
        time.sleep(0.02)
    for loop in loops:
        loop.stop()
    reads = store.request_counts()["read"]
    assert reads >= 4  # validators refreshed repeatedly, the miner loop once
    assert r.snapshot.status["miner"].success and r.snapshot.status["validator"].success


def test_store_failures_keep_the_stores_bounded_reason(resolver, clock):
    class Broken(MemoryStateStore):
        def read_runs(self, *a, **k):
            raise StoreUnavailable("401 from the API", reason="auth")

    r = make(Broken(clock=clock), resolver, clock)
    assert not r.refresh("miner")
    assert r.snapshot.status["miner"].failures == {"auth": 1}


def test_seed_network_is_deterministic_for_a_seed(clock):
    a, b = MemoryStateStore(clock=clock), MemoryStateStore(clock=clock)
    na, nb = seed_network(a, seed=3, clock=clock), seed_network(b, seed=3, clock=clock)
    assert na.pog == nb.pog and na.run_ids == nb.run_ids
    assert key("//validator0").ss58_address == na.validator_hotkeys[0]


def test_the_garbage_collector_is_paused_during_refreshes_and_always_resumed():
    import gc

    assert gc.isenabled()
    outer = refresh_module._gc_paused()
    inner = refresh_module._gc_paused()
    outer.__enter__()
    inner.__enter__()
    assert not gc.isenabled()
    outer.__exit__(None, None, None)  # the first refresh finishes while another still runs
    assert not gc.isenabled()
    inner.__exit__(None, None, None)
    assert gc.isenabled()
    with pytest.raises(RuntimeError), refresh_module._gc_paused():
        raise RuntimeError("a failing refresh")
    assert gc.isenabled()


def test_throwaway_keys_signing_validator_runs_do_not_create_series(store, network, resolver, clock):
    strangers = [
        record(f"//stranger{i}", "validator", {"allocated_hotkeys": []}, run_id=f"s{i}", now=clock())
        for i in range(20)
    ]
    store.put_many(strangers)
    r = make(store, resolver, clock)
    r.refresh("validator")
    assert r.snapshot.rejected[("validator", "untrusted_validator")] == 21  # + the low-stake one
    assert set(r.snapshot.validators) == {*network.validator_hotkeys, network.low_stake_validator}
