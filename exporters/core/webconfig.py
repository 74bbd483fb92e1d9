"""The Prometheus exporter-toolkit web config file: TLS and bcrypt basic auth.

Same YAML format as node_exporter's ``--web.config.file`` so one file serves the whole fleet::

    tls_server_config:
      cert_file: server.crt
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # optional, with client_ca_file
      client_ca_file: ca.crt
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash; plaintext is refused

Paths are relative to the config file's directory, as in exporter-toolkit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.core.errors import ConfigError

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass
class TLSConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """Build the server-side SSL context (raises ssl.SSLError/OSError on bad files)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=str(self.client_ca_file))
        return ctx


@dataclass
class WebConfig:
    tls: TLSConfig | None = None
    basic_auth_users: dict[str, str] = field(default_factory=dict)
    _ok_cache: set[tuple[str, bytes]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _dummy: bytes | None = field(default=None, repr=False)

    def _dummy_hash(self) -> bytes:
        """A bcrypt hash of a random password at the highest cost among the configured users."""
        with self._lock:
            if self._dummy is None:
                import bcrypt

                self._dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=self._cost()))
            return self._dummy

    def _cost(self) -> int:
        costs = [int(h[4:6]) for h in self.basic_auth_users.values() if h[4:6].isdigit()]
        return min(max(costs, default=10), 31) if costs else 10

    def check_basic_auth(self, user: str, password: str) -> bool:
        """Verify against the bcrypt hash; successful pairs are cached as a keyed digest.

        bcrypt costs tens of milliseconds by design; exporter-toolkit caches too, so a 15 s
        scrape interval does not burn CPU on every request.
        """
        hashed = self.basic_auth_users.get(user)
        if hashed is None:
            # Same bcrypt work as a known user with a wrong password: timing does not tell
            # which user names exist (exporter-toolkit does the same).
            import bcrypt

            bcrypt.checkpw(password.encode(), self._dummy_hash())
            return False
        key = (user, hmac.new(hashed.encode(), password.encode(), hashlib.sha256).digest())
        with self._lock:
            if key in self._ok_cache:
                return True
        import bcrypt

        try:
            ok = bcrypt.checkpw(password.encode(), hashed.encode())
        except ValueError:
            return False
        if ok:
            with self._lock:
                self._ok_cache.add(key)
        return ok


def load_web_config(path: str | Path | WebConfig | None) -> WebConfig:
    """Read and validate a web config file; every problem is reported in one ConfigError.

    An already loaded WebConfig (what ``--web.config.file`` resolves to) is returned as is.
    """
    if isinstance(path, WebConfig):
        return path
    if path is None:
        return WebConfig()
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except OSError as exc:
        raise ConfigError([f"--web.config.file: cannot read {p}: {exc.strerror}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"--web.config.file: {p} is not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"--web.config.file: {p} must be a mapping"])
    problems: list[str] = []
    known = {"tls_server_config", "basic_auth_users", "http_server_config"}
    problems += [f"web config: unknown key {k!r}" for k in data if k not in known]
    tls = _parse_tls(data.get("tls_server_config"), p.parent, problems)
    users = _parse_users(data.get("basic_auth_users"), problems)
    if problems:
        raise ConfigError(problems)
    cfg = WebConfig(tls=tls, basic_auth_users=users)
    if tls is not None:
        try:
            tls.ssl_context()
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError([f"web config: TLS certificate/key cannot be loaded: {exc}"]) from None
    return cfg


def _parse_tls(raw: Any, base: Path, problems: list[str]) -> TLSConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("web config: tls_server_config must be a mapping")
        return None

    def rel(key: str) -> Path | None:
        value = raw.get(key)
        if value in (None, ""):
            return None
        path = Path(str(value))
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            problems.append(f"web config: tls_server_config.{key}: no such file {path}")
        return path

    cert, key, ca = rel("cert_file"), rel("key_file"), rel("client_ca_file")
    if cert is None or key is None:
        problems.append("web config: tls_server_config needs cert_file and key_file")
    auth = str(raw.get("client_auth_type", "NoClientCert"))
    if auth not in _CLIENT_AUTH:
        problems.append(f"web config: client_auth_type {auth!r} not one of {sorted(_CLIENT_AUTH)}")
    if auth == "RequireAndVerifyClientCert" and ca is None:
        problems.append("web config: RequireAndVerifyClientCert needs client_ca_file")
    versions = {k: raw.get(k) for k in ("min_version", "max_version") if raw.get(k)}
    for k, v in versions.items():
        if v not in _TLS_VERSIONS:
            problems.append(f"web config: {k} {v!r} not one of {sorted(_TLS_VERSIONS)}")
    if cert is None or key is None:
        return None
    return TLSConfig(
        cert_file=cert,
        key_file=key,
        client_auth_type=auth,
        client_ca_file=ca,
        min_version=str(versions.get("min_version", "TLS12")),
        max_version=versions.get("max_version"),
    )


def _parse_users(raw: Any, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append("web config: basic_auth_users must be a mapping of user: bcrypt-hash")
        return {}
    users: dict[str, str] = {}
    for user, hashed in raw.items():
        if not isinstance(hashed, str) or not hashed.startswith(_BCRYPT_PREFIXES):
            problems.append(
                f"web config: basic_auth_users.{user} is not a bcrypt hash "
                "(plaintext passwords are not accepted; use `htpasswd -nBC 10 USER`)"
            )
            continue
        users[str(user)] = hashed
    return users
