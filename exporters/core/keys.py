"""Load the hotkey that signs published run state, from a bittensor wallet directory.

Miners and validators already have a wallet on disk (``btcli`` / ``bt.Wallet`` layout)::

    <wallet.path>/<wallet.name>/hotkeys/<wallet.hotkey>   JSON: secretSeed, privateKey, ...

Hotkeys are normally unencrypted (the subnet code signs unattended). An encrypted hotkey is
unlocked only through bittensor's own ``BT_PW_<PATH>`` environment variable; we never prompt,
because an exporter runs under systemd. Errors are :class:`ConfigError` so they are reported
at startup with the other configuration problems. Secret material is never logged: only the
ss58 address leaves this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from exporters.core.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from bittensor_core import Keypair

DEFAULT_WALLET_PATH = "~/.bittensor/wallets"


def hotkey_file(wallet_name: str, wallet_hotkey: str, wallet_path: str = DEFAULT_WALLET_PATH) -> Path:
    """Where bittensor keeps this hotkey's keyfile."""
    return Path(os.path.expanduser(wallet_path)) / wallet_name / "hotkeys" / wallet_hotkey


def password_env_var(path: Path) -> str:
    """bittensor's per-keyfile password variable, e.g. ``BT_PW__ROOT__BITTENSOR_..._HOT``."""
    normalized = str(path).replace(os.sep, "_").replace(".", "_")
    return f"BT_PW_{normalized.upper()}"


def load_hotkey(wallet_name: str, wallet_hotkey: str, wallet_path: str = DEFAULT_WALLET_PATH) -> Keypair:
    """Read ``<path>/<name>/hotkeys/<hotkey>`` and return its keypair, or raise ConfigError."""
    import bittensor_core

    path = hotkey_file(wallet_name, wallet_hotkey, wallet_path)
    where = f"hotkey file {path}"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{where} does not exist (check --wallet.name/--wallet.hotkey/--wallet.path)"]
        ) from None
    except OSError as exc:
        raise ConfigError([f"{where} is not readable: {exc.strerror or exc}"]) from None
    if _is_encrypted(bittensor_core, data):
        data = _decrypt(bittensor_core, data, path)
    try:
        keypair = bittensor_core.deserialize_keypair_from_keyfile_data(data)
    except (bittensor_core.KeyfileError, ValueError, TypeError):
        # The library's message may quote the file; keep ours free of key material.
        raise ConfigError([f"{where} is not a bittensor keyfile (expected JSON with secretSeed)"]) from None
    if not _has_secret(keypair):
        raise ConfigError([f"{where} holds only a public key; a signing hotkey needs its secret"])
    return keypair


def keypair_from_uri(uri: str) -> Keypair:
    """A development keypair from a Substrate URI such as ``//Alice`` (never for mainnet)."""
    import bittensor_core

    try:
        return bittensor_core.Keypair.create_from_uri(uri)
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"--hotkey.uri: not a valid key URI ({type(exc).__name__})"]) from None


def _is_encrypted(lib: object, data: bytes) -> bool:
    try:
        return bool(lib.keyfile_data_is_encrypted(data))  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        return False


def _decrypt(lib: object, data: bytes, path: Path) -> bytes:
    env_var = password_env_var(path)
    try:
        password = lib.get_password_from_environment(env_var)  # type: ignore[attr-defined]
    except (ValueError, TypeError, KeyError):
        password = None
    if not password:
        raise ConfigError(
            [
                f"hotkey file {path} is encrypted; set {env_var} (bittensor's keyfile password variable) "
                "or use an unencrypted hotkey, as miners and validators normally do"
            ]
        )
    try:
        return bytes(lib.decrypt_keyfile_data(data, password))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - wrong password or corrupt file; never echo secrets
        raise ConfigError([f"hotkey file {path} could not be decrypted with {env_var}"]) from None


def _has_secret(keypair: Keypair) -> bool:
    try:
        keypair.sign(b"opencompute-keycheck")
    except Exception:  # noqa: BLE001 - a public-only keypair raises on sign
        return False
    return True
