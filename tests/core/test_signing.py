"""Signing: v1 parity with the original SN27 scheme, v2 envelopes, and every rejection reason."""

from __future__ import annotations

import copy
import hashlib

import bittensor_wallet
import pytest
from bittensor_core import Keypair

from exporters.core.signing import (
    ENVELOPE_KEY,
    REJECT_REASONS,
    Outcome,
    make_envelope,
    sign_v1,
    v2_message,
    verify_run,
    verify_v1,
)
from exporters.core.state.base import RunRecord

PROJECT = "neuralinternet/opencompute"
NOW = 1_750_000_000.0
RUN_ID = "ab12cd34"
ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


def stats_payload() -> dict:
    entry = {
        "uid": 3,
        "hotkey": BOB.ss58_address,
        "gpu_specs": {"gpu_name": "NVIDIA H100 80GB HBM3", "num_gpus": 8},
        "score": 42.5,
        "allocated": True,
        "own_score": True,
        "reliability_score": 0.0,
        "created_at": "2025-06-13 12:00:00",
    }
    return {"stats": {"3": entry}, "allocated_hotkeys": [BOB.ss58_address]}


def signed_config(
    payload: dict | None = None,
    *,
    keypair: Keypair = ALICE,
    run_id: str = RUN_ID,
    role: str = "validator",
    netuid: int = 27,
    seq: int = 5,
    signed_at: float = NOW - 10,
    mode: str = "envelope",
    project: str = PROJECT,
) -> dict:
    """A run config as our publisher writes it (v2 envelope + v1 hotkey/signature)."""
    env = make_envelope(
        keypair,
        entity_project=project,
        netuid=netuid,
        run_id=run_id,
        role=role,
        payload=stats_payload() if payload is None else payload,
        seq=seq,
        signed_at=signed_at,
        mode=mode,
    )
    config = {
        ENVELOPE_KEY: env,
        "hotkey": keypair.ss58_address,
        "signature": sign_v1(keypair, run_id),
        "role": role,
        "config": {"netuid": netuid},
    }
    if mode == "full":
        config.update(copy.deepcopy(env["payload"]))
    return config


def verify(config: dict, run_id: str = RUN_ID, **kwargs):
    options = {"entity_project": PROJECT, "netuid": 27, "role": "validator", "now": NOW} | kwargs
    return verify_run(
        RunRecord(run_id=run_id, name=f"validator-{ALICE.ss58_address}", config=config), **options
    )


# --------------------------------------------------------------------------- v1 parity


def test_v1_signature_verifies_exactly_as_the_original_verify_run_does():
    signature = sign_v1(ALICE, RUN_ID)
    assert signature == signature.lower() and not signature.startswith("0x") and len(signature) == 128
    # The original: bt.Keypair(ss58_address=hk).verify(sha256(run.id.encode()).digest(), bytes.fromhex(sig))
    data_hash = hashlib.sha256(RUN_ID.encode()).digest()
    live = bittensor_wallet.Keypair(ss58_address=ALICE.ss58_address)
    assert live.verify(data_hash, bytes.fromhex(signature))
    assert not live.verify(hashlib.sha256(b"other123").digest(), bytes.fromhex(signature))


def test_v1_signature_made_by_the_live_networks_library_verifies_here():
    live_key = bittensor_wallet.Keypair.create_from_uri("//Charlie")
    signature = live_key.sign(hashlib.sha256(RUN_ID.encode()).digest()).hex()
    assert verify_v1(live_key.ss58_address, signature, RUN_ID)
    assert not verify_v1(live_key.ss58_address, signature, "zz99yy88")
    assert not verify_v1(ALICE.ss58_address, signature, RUN_ID)


@pytest.mark.parametrize(
    ("hotkey", "signature", "run_id"),
    [
        (ALICE.ss58_address, "zz" * 64, RUN_ID),
        (ALICE.ss58_address, "ab", RUN_ID),
        (ALICE.ss58_address, None, RUN_ID),
        (ALICE.ss58_address, 12345, RUN_ID),
        ("not-an-ss58", "00" * 64, RUN_ID),
        (None, "00" * 64, RUN_ID),
        (ALICE.ss58_address, "00" * 64, None),
        ({"a": 1}, ["x"], b"bytes"),
    ],
)
def test_verify_v1_never_raises_on_garbage(hotkey, signature, run_id):
    assert verify_v1(hotkey, signature, run_id) is False


def test_a_0x_prefixed_v1_signature_is_rejected_because_the_original_rejects_it():
    # The original's verify_run does bytes.fromhex(config["signature"]), which raises on "0x": such
    # a run never counts on the live network, so it must not count in our views either.
    signature = "0x" + sign_v1(ALICE, RUN_ID)
    with pytest.raises(ValueError):
        bytes.fromhex(signature)
    assert verify_v1(ALICE.ss58_address, signature, RUN_ID) is False
    config = {"hotkey": ALICE.ss58_address, "signature": signature, "role": "validator"}
    result = verify(config)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "bad_hex")


def test_v2_envelope_signature_verifies_with_the_live_networks_library_both_ways():
    env = make_envelope(
        ALICE,
        entity_project=PROJECT,
        netuid=27,
        run_id=RUN_ID,
        role="miner",
        payload={"a": 1},
        seq=1,
        signed_at=NOW,
    )
    message = v2_message(
        entity_project=PROJECT, netuid=27, run_id=RUN_ID, role="miner", hotkey=ALICE.ss58_address,
        payload={"a": 1}, seq=1, signed_at=env["signed_at"],
    )  # fmt: skip
    live = bittensor_wallet.Keypair(ss58_address=ALICE.ss58_address)
    assert live.verify(message, bytes.fromhex(env["signature"]))
    # and a v2 envelope signed by bittensor_wallet verifies with our reader
    live_key = bittensor_wallet.Keypair.create_from_uri("//Alice")
    forged_by_live = dict(env, signature=live_key.sign(message).hex())
    config = {ENVELOPE_KEY: forged_by_live, "hotkey": ALICE.ss58_address, "role": "miner"}
    assert verify(config, role="miner").outcome is Outcome.VALID_V2


# --------------------------------------------------------------------------- v2 outcomes


def test_a_fresh_v2_envelope_is_valid_and_its_signed_payload_is_used():
    result = verify(signed_config())
    assert result.outcome is Outcome.VALID_V2 and result.reason is None
    assert result.hotkey == ALICE.ss58_address
    assert result.payload == stats_payload()
    assert (result.seq, result.signed_at) == (5, NOW - 10)


def test_a_run_without_envelope_falls_back_to_the_original_v1_check():
    config = signed_config()
    del config[ENVELOPE_KEY]
    config["stats"] = stats_payload()["stats"]
    result = verify(config)
    assert result.outcome is Outcome.VALID_V1_ONLY
    assert result.payload["stats"] == stats_payload()["stats"]
    assert "signature" not in result.payload


def test_a_tampered_payload_with_a_valid_v1_signature_is_caught_by_v2():
    config = signed_config()
    config[ENVELOPE_KEY]["payload"]["stats"]["3"]["score"] = 100.0
    assert verify_v1(config["hotkey"], config["signature"], RUN_ID)  # the original would accept it
    result = verify(config)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, "tampered")
    assert result.payload == {}


def test_full_mode_rejects_a_top_level_copy_that_differs_from_the_signed_payload():
    config = signed_config(mode="full")
    assert verify(config).outcome is Outcome.VALID_V2
    config["allocated_hotkeys"] = [ALICE.ss58_address]  # what the original's readers would use
    assert verify(config).reason == "tampered"


def test_envelope_mode_ignores_the_originals_own_top_level_keys_on_a_shared_run():
    config = signed_config(mode="envelope")
    config["stats"] = {"9": {"score": 1.0}}  # written by the original validator process
    result = verify(config)
    assert result.outcome is Outcome.VALID_V2
    assert result.payload == stats_payload()


def test_integers_that_come_back_as_floats_still_verify():
    config = signed_config({"gpu": {"count": 8, "capacity": 81920}})
    config[ENVELOPE_KEY]["payload"]["gpu"]["count"] = 8.0  # a float64 round trip
    assert verify(config).outcome is Outcome.VALID_V2


def test_make_envelope_refuses_values_that_would_not_survive_a_json_round_trip():
    for bad in ({"x": float("nan")}, {"x": 2**60}, {1: "non-string key"}):
        with pytest.raises(ValueError):
            make_envelope(
                ALICE,
                entity_project=PROJECT,
                netuid=27,
                run_id=RUN_ID,
                role="miner",
                payload=bad,
                seq=1,
                signed_at=NOW,
            )


@pytest.mark.parametrize(
    ("field", "value"),
    [("run_id", "zz99yy88"), ("project", "someone/else"), ("netuid_signed", 15), ("role_signed", "miner")],
)
def test_an_envelope_replayed_onto_another_run_project_network_or_role_is_rejected(field, value):
    if field == "run_id":
        result = verify(signed_config(), run_id=value)
    elif field == "project":
        result = verify(signed_config(project=value))
    elif field == "netuid_signed":
        config = signed_config(netuid=value)
        config["config"] = {"netuid": 27}
        config[ENVELOPE_KEY]["netuid"] = 27  # even when the cleartext copy is edited to match
        result = verify(config)
    else:
        config = signed_config(role=value)
        config["role"] = "validator"
        config[ENVELOPE_KEY]["role"] = "validator"
        result = verify(config)
    assert result.outcome is Outcome.REJECTED
    assert result.reason in {"wrong_signature", "tampered"}


def test_seq_tracking_accepts_equal_or_higher_and_remembers_the_highest():
    last_seq: dict[str, int] = {}
    assert verify(signed_config(seq=7), last_seq=last_seq).outcome is Outcome.VALID_V2
    assert last_seq == {ALICE.ss58_address: 7}
    assert verify(signed_config(seq=7), last_seq=last_seq).outcome is Outcome.VALID_V2
    assert verify(signed_config(seq=9), last_seq=last_seq).outcome is Outcome.VALID_V2
    assert verify(signed_config(seq=8), last_seq=last_seq).reason == "replayed_seq"
    assert last_seq == {ALICE.ss58_address: 9}


def test_freshness_uses_signed_at_and_refuses_far_future_stamps():
    assert verify(signed_config(signed_at=NOW - 3599), max_age=3600).outcome is Outcome.VALID_V2
    assert verify(signed_config(signed_at=NOW - 3601), max_age=3600).reason == "stale"
    assert verify(signed_config(signed_at=NOW + 60)).outcome is Outcome.VALID_V2
    assert verify(signed_config(signed_at=NOW + 86400)).reason == "stale"


# --------------------------------------------------------------------------- every reason


def _without_envelope(config: dict) -> dict:
    config = dict(config)
    del config[ENVELOPE_KEY]
    return config


def _crafted() -> dict[str, tuple[dict, dict]]:
    """One hostile or broken run config per rejection reason (config, extra verify kwargs)."""
    base = signed_config

    def env_edit(**changes) -> dict:
        config = base()
        config[ENVELOPE_KEY].update(changes)
        return config

    other_sig = make_envelope(
        BOB,
        entity_project=PROJECT,
        netuid=27,
        run_id=RUN_ID,
        role="validator",
        payload={},
        seq=1,
        signed_at=NOW,
    )["signature"]
    wrong_sig = env_edit(signature=other_sig)
    wrong_sig["signature"] = sign_v1(BOB, RUN_ID)  # no valid v1 either: not "tampered", just wrong
    return {
        "missing_fields": (_without_envelope({**base(), "signature": None}), {}),
        "bad_hex": (env_edit(signature="0xnothex" + "0" * 120), {}),
        "bad_ss58": (env_edit(hotkey="5NotAnAddress"), {}),
        "wrong_signature": (wrong_sig, {}),
        "tampered": (env_edit(payload={"stats": {}, "allocated_hotkeys": []}), {}),
        "stale": (base(signed_at=NOW - 7200), {"max_age": 3600}),
        "replayed_seq": (base(seq=3), {"last_seq": {ALICE.ss58_address: 4}}),
        "wrong_role": ({**base(), "role": "miner"}, {}),
        "wrong_netuid": ({**base(), "config": {"netuid": 15}}, {}),
        "oversized": (base({"blob": "x" * 5000}), {"max_bytes": 4096}),
        "non_json": (env_edit(payload=["not", "an", "object"]), {}),
    }


@pytest.mark.parametrize("reason", REJECT_REASONS)
def test_every_rejection_reason_is_reachable_with_a_crafted_run(reason):
    config, kwargs = _crafted()[reason]
    result = verify(config, **kwargs)
    assert (result.outcome, result.reason) == (Outcome.REJECTED, reason)
    assert result.payload == {}


def test_the_crafted_cases_cover_exactly_the_documented_reasons():
    assert set(_crafted()) == set(REJECT_REASONS)


def test_v1_only_runs_are_rejected_for_a_signature_by_another_hotkey():
    config = _without_envelope(signed_config())
    config["signature"] = sign_v1(BOB, RUN_ID)
    assert verify(config).reason == "wrong_signature"


@pytest.mark.parametrize(
    "config",
    [
        "a string",
        None,
        {ENVELOPE_KEY: "not a dict", "hotkey": ALICE.ss58_address},
        {ENVELOPE_KEY: {"version": 1}},
        {ENVELOPE_KEY: {**signed_config()[ENVELOPE_KEY], "seq": True}},
        {ENVELOPE_KEY: {**signed_config()[ENVELOPE_KEY], "signed_at": float("inf")}},
        {ENVELOPE_KEY: {**signed_config()[ENVELOPE_KEY], "payload": {"x": {1, 2}}}},
        {"hotkey": 5, "signature": "00" * 64},
        {"config": "not a dict", "hotkey": ALICE.ss58_address, "signature": sign_v1(ALICE, RUN_ID)},
    ],
)
def test_verify_run_never_raises_on_hostile_configs(config):
    record = RunRecord(run_id=RUN_ID, name="x", config=config)  # type: ignore[arg-type]
    result = verify_run(record, entity_project=PROJECT, netuid=27, role="validator", now=NOW)
    assert result.reason in REJECT_REASONS or result.outcome is Outcome.VALID_V1_ONLY


# --------------------------------------------------------------------------- hotkey loading


def _wallet(tmp_path, name="cold", hotkey="hot"):
    import bittensor as bt

    wallet = bt.Wallet(name=name, hotkey=hotkey, path=str(tmp_path))
    wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
    return wallet


def test_load_hotkey_reads_a_wallet_written_by_bittensor(tmp_path):
    from exporters.core.keys import load_hotkey

    wallet = _wallet(tmp_path)
    keypair = load_hotkey("cold", "hot", str(tmp_path))
    assert keypair.ss58_address == wallet.hotkey.ss58_address
    assert verify_v1(keypair.ss58_address, sign_v1(keypair, RUN_ID), RUN_ID)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist"),
        (b"{not json", "not a bittensor keyfile"),
        (b'{"ss58Address": "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"}', "holds only a public key"),
    ],
)
def test_load_hotkey_reports_broken_wallets_as_config_errors(tmp_path, content, message):
    from exporters.core.config import ConfigError
    from exporters.core.keys import load_hotkey

    path = tmp_path / "cold" / "hotkeys" / "hot"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        load_hotkey("cold", "hot", str(tmp_path))
    assert message in str(err.value)


def test_an_encrypted_hotkey_needs_bittensors_password_variable_and_never_echoes_secrets(
    tmp_path, monkeypatch
):
    import bittensor_core

    from exporters.core.config import ConfigError
    from exporters.core.keys import hotkey_file, load_hotkey, password_env_var

    secret = bittensor_core.serialized_keypair_to_keyfile_data(BOB)
    path = hotkey_file("cold", "hot", str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_bytes(bittensor_core.encrypt_keyfile_data(secret, "pw"))
    with pytest.raises(ConfigError) as err:
        load_hotkey("cold", "hot", str(tmp_path))
    assert password_env_var(path) in str(err.value)
    assert "secretSeed" not in str(err.value) and "privateKey" not in str(err.value)
