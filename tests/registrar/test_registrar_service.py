"""The registrar against a fake chain, through bittensor 11's real Client, executor and ServePrometheus."""

from __future__ import annotations

import random
import time

import pytest
from bittensor._transport.errors import MaxRetriesExceeded, SubstrateRequestException
from fakes.substrate import HANG
from registrar_helpers import NETUID, PUBLIC_IP, desired

from exporters.registrar.record import ExitCode, PrometheusRecord
from exporters.registrar.service import Outcome, RetryPolicy


def serve_calls(chain):
    return [s.call for s in chain.submissions if s.call.function == "serve_prometheus"]


def put_record(chain, hotkey, *, version=10, ip=PUBLIC_IP, port=9928, ip_type=4, block=9_000):
    import ipaddress

    chain.set_storage(
        "SubtensorModule",
        "Prometheus",
        [NETUID, hotkey.ss58_address],
        {
            "block": block,
            "version": version,
            "ip": int(ipaddress.ip_address(ip)),
            "port": port,
            "ip_type": ip_type,
        },
    )


def test_an_unchanged_record_is_skipped_without_a_submission(chain, hotkey, make_registrar):
    put_record(chain, hotkey)

    result = make_registrar().run_once()

    assert result.outcome is Outcome.SKIPPED_UNCHANGED
    assert result.code == ExitCode.OK
    assert chain.submissions == []
    assert result.record == PrometheusRecord(version=10, ip=3405803783, port=9928, ip_type=4, block=9_000)


def test_a_version_bump_with_the_same_endpoint_is_submitted(chain, hotkey, make_registrar):
    # The original compared its own version with itself and skipped exactly this case.
    put_record(chain, hotkey, version=9)

    result = make_registrar(desired(version=10)).run_once()

    assert result.outcome is Outcome.SERVED
    [call] = serve_calls(chain)
    assert (call.module, call.function) == ("SubtensorModule", "serve_prometheus")
    assert call.params == {"netuid": 27, "version": 10, "ip": 3405803783, "port": 9928, "ip_type": 4}
    assert chain.submissions[0].signer == hotkey.ss58_address
    stored = chain.get_storage("SubtensorModule", "Prometheus", [NETUID, hotkey.ss58_address])
    assert stored["version"] == 10 and stored["block"] == chain.block
    assert result.record.block == chain.block


@pytest.mark.parametrize(
    ("record", "want"),
    [
        ({"ip": "198.51.100.9"}, {"ip": 3405803783}),
        ({"port": 9000}, {"port": 9928}),
    ],
)
def test_a_changed_ip_or_port_is_submitted_with_the_new_value(chain, hotkey, make_registrar, record, want):
    put_record(chain, hotkey, **record)

    result = make_registrar().run_once()

    assert result.outcome is Outcome.SERVED
    [call] = serve_calls(chain)
    for key, value in want.items():
        assert call.params[key] == value


def test_a_hotkey_that_never_served_gets_its_first_record(chain, hotkey, make_registrar):
    result = make_registrar().run_once()

    assert result.outcome is Outcome.SERVED
    assert len(serve_calls(chain)) == 1
    assert chain.get_storage("SubtensorModule", "Prometheus", [NETUID, hotkey.ss58_address])["port"] == 9928


def test_an_ipv6_address_is_sent_as_a_u128_with_ip_type_6(chain, hotkey, make_registrar):
    result = make_registrar(desired(ip="2606:4700::1111")).run_once()

    assert result.outcome is Outcome.SERVED
    [call] = serve_calls(chain)
    assert call.params["ip_type"] == 6
    assert call.params["ip"] == 0x26064700000000000000000000001111
    assert "[2606:4700::1111]:9928" in result.message


def test_force_reserves_an_unchanged_record(chain, hotkey, make_registrar):
    put_record(chain, hotkey, block=chain.block - 100)

    result = make_registrar(force=True).run_once()

    assert result.outcome is Outcome.SERVED
    assert len(serve_calls(chain)) == 1


def test_waiting_for_finalization_is_passed_to_the_submission(chain, make_registrar):
    make_registrar(wait_for_finalization=True).run_once()

    [submission] = chain.submissions
    assert submission.wait_for_inclusion and submission.wait_for_finalization


def test_an_unregistered_hotkey_is_refused_locally_with_its_exit_code(chain, make_registrar):
    from bittensor_core import Keypair

    stranger = Keypair.create_from_uri("//Bob")

    result = make_registrar(signer=stranger).run_once()

    assert result.code == ExitCode.NOT_REGISTERED
    assert result.outcome is Outcome.INVALID
    assert stranger.ss58_address in result.message and "subnet 27" in result.message
    assert chain.submissions == []


@pytest.mark.parametrize(
    ("record", "code"),
    [
        (desired(ip="0.0.0.0"), ExitCode.INVALID_IP),
        (desired(ip="127.0.0.2"), ExitCode.INVALID_IP),
        (desired(ip="::1"), ExitCode.INVALID_IP),
        (desired(ip="255.255.255.255"), ExitCode.IP_OUT_OF_RANGE),
        (desired(port=0), ExitCode.INVALID_PORT),
        (desired(port=70000), ExitCode.INVALID_PORT),
    ],
)
def test_values_the_chain_would_reject_never_reach_it(chain, make_registrar, record, code):
    result = make_registrar(record).run_once()

    assert result.code == code
    assert result.outcome is Outcome.INVALID
    assert chain.calls == []  # not even a connection


def test_a_serve_inside_the_rate_limit_window_is_predicted_and_not_submitted(chain, hotkey, make_registrar):
    put_record(chain, hotkey, version=9, block=chain.block - 10)

    result = make_registrar().run_once()

    assert result.outcome is Outcome.RATE_LIMITED
    assert result.code == ExitCode.RATE_LIMITED
    assert "ServingRateLimitExceeded" in result.message and f"block {chain.block + 40}" in result.message
    assert chain.submissions == []


def test_a_rate_limit_rejection_from_the_chain_is_reported_by_name_and_not_retried(
    chain, make_registrar, clock
):
    chain.reject_next_submit("ServingRateLimitExceeded")

    result = make_registrar().run_once()

    assert result.outcome is Outcome.RATE_LIMITED
    assert result.code == ExitCode.RATE_LIMITED
    assert result.error_name == "ServingRateLimitExceeded"
    assert "ServingRateLimitExceeded" in result.message
    assert len(chain.submissions) == 1
    assert result.attempts == 1 and clock.sleeps == []


def test_a_rate_limit_rejected_in_the_pool_is_reported_by_name_and_not_retried(chain, make_registrar, clock):
    # Pool validation rejects with InvalidTransaction::Custom(12); bittensor names it.
    chain.fail("submit", SubstrateRequestException("Invalid Transaction: Custom error: 12"))

    result = make_registrar().run_once()

    assert result.code == ExitCode.RATE_LIMITED
    assert result.error_name == "ServingRateLimitExceeded"
    assert chain.count("submit") == 1 and clock.sleeps == []


def test_other_dispatch_errors_are_reported_by_name_with_their_exit_code(chain, make_registrar):
    chain.reject_next_submit("InvalidPort")
    first = make_registrar().run_once()
    chain.reject_next_submit("SubnetNotExists")
    second = make_registrar().run_once()

    assert (first.code, first.error_name) == (ExitCode.INVALID_PORT, "InvalidPort")
    assert (second.code, second.outcome) == (ExitCode.CHAIN_ERROR, Outcome.DISPATCH_ERROR)
    assert "SubnetNotExists" in second.message
    assert len(chain.submissions) == 2


def test_transient_errors_are_retried_until_the_serve_succeeds(chain, make_registrar, clock):
    chain.fail("connect", ConnectionRefusedError(111, "Connection refused"))
    chain.fail("query", MaxRetriesExceeded("could not connect to any endpoint: connection closed"))
    chain.fail("submit", ConnectionResetError(104, "Connection reset by peer"))

    result = make_registrar(rng=random.Random(7)).run_once()

    assert result.outcome is Outcome.SERVED
    assert result.attempts == 4
    assert len(clock.sleeps) == 3
    assert len(serve_calls(chain)) == 1
    # Full jitter: each delay lies within [0, min(cap, base * 2**(n-1))].
    assert all(0 <= d <= 2**n for n, d in enumerate(clock.sleeps))


def test_a_submission_whose_answer_was_lost_is_not_served_twice(chain, hotkey, make_registrar):
    # The first submission lands, but its answer never arrives: the retry sees the new record.
    real_submit = chain.submit
    lost = {"done": False}

    async def submit_then_drop(*args, **kwargs):
        result = await real_submit(*args, **kwargs)
        if not lost["done"]:
            lost["done"] = True
            raise TimeoutError("the connection timed out without a response")
        return result

    chain.submit = submit_then_drop
    put_record(chain, hotkey, version=9)

    result = make_registrar().run_once()

    assert result.outcome is Outcome.SERVED
    assert result.attempts == 2
    assert "earlier attempt" in result.message
    assert len(chain.submissions) == 1


def test_an_unreachable_chain_fails_after_max_attempts_with_a_clear_message(chain, make_registrar, clock):
    chain.fail("connect", *[ConnectionRefusedError(111, "Connection refused")] * 10)

    result = make_registrar(policy=RetryPolicy(max_attempts=3, max_time=600.0)).run_once()

    assert result.outcome is Outcome.TRANSPORT_ERROR
    assert result.code == ExitCode.UNREACHABLE
    assert result.attempts == 3 and chain.count("connect") == 3
    assert "gave up after 3 attempt(s)" in result.message and "Connection refused" in result.message


def test_an_unreachable_chain_fails_within_the_total_time_budget(chain, make_registrar, clock):
    chain.fail("connect", *[ConnectionRefusedError(111, "Connection refused")] * 100)
    policy = RetryPolicy(max_attempts=100, max_time=20.0, base=4.0, cap=8.0)

    result = make_registrar(policy=policy).run_once()

    assert result.code == ExitCode.UNREACHABLE
    assert clock.now <= 20.0
    assert 1 < result.attempts < 100


def test_an_endpoint_that_never_answers_is_cut_off_by_the_time_budget(chain, make_registrar):
    chain.fail("connect", HANG, HANG, HANG)
    policy = RetryPolicy(max_attempts=3, max_time=0.4, attempt_timeout=0.15, base=0.01, cap=0.01)

    started = time.monotonic()
    result = make_registrar(policy=policy, sleep=time.sleep, clock=time.monotonic).run_once()

    assert time.monotonic() - started < 1.5
    assert result.code == ExitCode.UNREACHABLE
    assert "no answer from the chain within" in result.message


def test_a_real_transport_to_a_closed_port_is_reported_unreachable(hotkey, clock):
    import socket

    import bittensor as bt

    from exporters.registrar.service import Registrar

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connection refused
    registrar = Registrar(
        signer=hotkey,
        client_factory=lambda: bt.Client(
            f"ws://127.0.0.1:{port}", fallback_endpoints=[], archive_endpoints=[]
        ),
        target=lambda: desired(),
        policy=RetryPolicy(max_attempts=2, max_time=10.0, attempt_timeout=5.0),
        sleep=clock.sleep,
        clock=clock,
    )

    started = time.monotonic()
    result = registrar.run_once()

    assert time.monotonic() - started < 10.0
    assert result.code == ExitCode.UNREACHABLE
    assert result.attempts == 2


def test_a_chain_read_error_is_final_and_named(chain, make_registrar, clock):
    chain.fail("query", SubstrateRequestException({"error": {"message": "Storage function not found"}}))

    result = make_registrar().run_once()

    assert result.code == ExitCode.CHAIN_ERROR
    assert "Storage function not found" in result.message
    assert clock.sleeps == []


def test_the_state_for_metrics_follows_each_run(chain, hotkey, make_registrar):
    registrar = make_registrar()
    registrar.run_once()
    registrar.run_once()
    chain.advance(100)
    chain.reject_next_submit("ServingRateLimitExceeded")
    registrar.force = True
    registrar.run_once()

    snap = registrar.state.snapshot()
    assert snap["outcomes"]["served"] == 1
    assert snap["outcomes"]["skipped_unchanged"] == 1
    assert snap["outcomes"]["rate_limited"] == 1
    assert snap["up_to_date"] is True
    assert snap["onchain"].version == 10 and snap["onchain"].port == 9928
    assert snap["last_success"] <= snap["last_attempt"] + 1
