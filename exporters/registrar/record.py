"""The on-chain Prometheus record, its version encoding, and the local checks the chain would make.

Pure data and rules, no chain access and no bittensor import: everything here is cheap to test and
safe to use while ``--help`` is being rendered.

The record is ``SubtensorModule.Prometheus(netuid, hotkey) = {block, version, ip, port, ip_type}``.
On SN27 it is a software-version beacon, not a metrics endpoint: validators publish their version
there and miners read it. The pallet (``serving.rs``) rejects, in this order: an ``ip_type`` other
than 4/6, a zero or loopback address or an IPv4 value >= u32::MAX, a hotkey registered nowhere,
a serve inside ``ServingRateLimit(netuid)`` blocks of the previous one, and port 0. We check the
same things locally first (stricter where it helps: all of 127.0.0.0/8, and registration on *this*
subnet, which is where SN27 miners look), so an operator gets a precise message and exit code
instead of a failed extrinsic.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

U16_MAX = 2**16 - 1
U32_MAX = 2**32 - 1
U128_MAX = 2**128 - 1

# The version beacon: 100*major + 10*minor + patch, as the original subnet code encodes it.
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-]?[0-9A-Za-z.+-]*)?$")


class ExitCode(IntEnum):
    """Process exit codes of ``register-prometheus``; one per failure class, stable for scripts."""

    OK = 0  # served, already up to date, or --dry-run
    ERROR = 1  # unexpected internal error (a bug: please report it)
    CONFIG = 2  # invalid flags or environment (reported by the CLI)
    KEY = 3  # the hotkey could not be loaded (wallet files, --hotkey.uri)
    IP_DISCOVERY = 4  # no public address could be discovered; pass --registrar.ip
    INVALID_IP = 10  # zero / unspecified / loopback address
    INVALID_IP_TYPE = 11  # ip_type is neither 4 nor 6
    INVALID_PORT = 12  # port 0 or outside 1..65535
    IP_OUT_OF_RANGE = 13  # IPv4 value >= u32::MAX (255.255.255.255) or IPv6 beyond u128
    NOT_REGISTERED = 14  # the hotkey holds no UID on the subnet
    MINER_HOTKEY = 15  # the hotkey has no validator permit: refused unless --registrar.role=miner
    NO_VERSION = 16  # no record on chain to keep the version of, and no --registrar.version
    RATE_LIMITED = 20  # ServingRateLimitExceeded (predicted locally or returned by the chain)
    CHAIN_ERROR = 21  # any other chain rejection, reported with the chain's error name
    UNREACHABLE = 22  # transport errors until --registrar.max-attempts / --registrar.max-retry-time


EXIT_CODE_HELP = """\
exit codes:
   0  served, already up to date (skipped), or --dry-run
   1  unexpected internal error
   2  invalid flags or environment
   3  hotkey could not be loaded (--wallet.*, --hotkey.uri)
   4  no public IP address could be discovered (pass --registrar.ip)
  10  invalid IP: zero, unspecified or loopback (127.0.0.0/8, ::1)
  11  invalid ip_type (not 4 or 6)
  12  invalid port (0 or outside 1..65535)
  13  IP out of range (IPv4 >= u32::MAX, i.e. 255.255.255.255)
  14  hotkey not registered on the subnet
  15  hotkey is a miner's (no validator permit); pass --registrar.role=miner to serve anyway
  16  no record on chain to keep the version of; pass --registrar.version
  20  rate limited (ServingRateLimitExceeded); not retried
  21  other chain error, reported with the chain's error name; not retried
  22  chain unreachable after the bounded retries"""


class LocalCheckError(Exception):
    """A call the chain would reject, caught before submitting; carries its exit code."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def encode_version(text: str) -> int:
    """Encode ``MAJOR.MINOR.PATCH`` as ``100*major + 10*minor + patch`` (the SN27 beacon format).

    The format is ambiguous once minor or patch reaches 10 (1.10.0 and 2.0.0 both give 200), so
    such versions are refused: pass the integer explicitly instead. A suffix such as ``rc1`` or
    ``.dev0`` is ignored.
    """
    match = _SEMVER.match(text.strip())
    if match is None:
        raise ValueError(f"expected MAJOR.MINOR.PATCH or an integer, got {text!r}")
    major, minor, patch = (int(part or 0) for part in match.groups())
    if minor >= 10 or patch >= 10:
        raise ValueError(
            f"version {text!r} cannot be encoded as 100*major+10*minor+patch without ambiguity "
            "(minor and patch must be < 10); pass the integer explicitly"
        )
    return 100 * major + 10 * minor + patch


def decode_version(value: int) -> str:
    """The inverse of :func:`encode_version`, for log lines (ambiguous for minor >= 10)."""
    return f"{value // 100}.{(value // 10) % 10}.{value % 10}"


def parse_version(text: str) -> int:
    """Flag converter: an explicit u32 integer is taken as is; a version string is encoded."""
    t = text.strip()
    if t.isdigit():
        value = int(t)
        if value > U32_MAX:
            raise ValueError(f"version {value} does not fit in u32")
        return value
    return encode_version(t)


def parse_ip(text: str) -> IPAddress:
    """Flag converter: an IPv4 or IPv6 address in standard notation (no host names)."""
    return ipaddress.ip_address(text.strip().strip("[]"))


def parse_port(text: str) -> int:
    """Flag converter: any integer; the range is checked later with its own exit code."""
    return int(text.strip())


@dataclass(frozen=True)
class PrometheusRecord:
    """One ``SubtensorModule.Prometheus`` entry as plain integers (``block`` is None if unknown)."""

    version: int
    ip: int
    port: int
    ip_type: int
    block: int | None = None

    @classmethod
    def from_chain(cls, value: Any) -> PrometheusRecord | None:
        """Decode a storage value (a dict of ints); None when the hotkey never served one."""
        if not isinstance(value, Mapping):
            return None
        try:
            record = cls(
                version=int(value.get("version") or 0),
                ip=int(value.get("ip") or 0),
                port=int(value.get("port") or 0),
                ip_type=int(value.get("ip_type") or 0),
                block=int(value.get("block") or 0),
            )
        except (TypeError, ValueError):
            return None
        # An all-zero entry is a storage default, not a record anyone served.
        if record.ip == 0 and record.port == 0 and record.version == 0 and not record.block:
            return None
        return record

    def same_endpoint(self, other: PrometheusRecord) -> bool:
        """Whether version, ip, port and ip_type all match (the block is when, not what)."""
        return (self.version, self.ip, self.port, self.ip_type) == (
            other.version,
            other.ip,
            other.port,
            other.ip_type,
        )

    @property
    def address(self) -> str:
        """The IP in text form, as operators read it."""
        try:
            if self.ip_type == 6:
                return str(ipaddress.IPv6Address(self.ip))
            return str(ipaddress.IPv4Address(self.ip))
        except ipaddress.AddressValueError:
            return str(self.ip)

    def describe(self) -> str:
        """``version 10 (0.1.0) at 1.2.3.4:9928, block 123`` for log lines."""
        where = f"[{self.address}]" if self.ip_type == 6 else self.address
        block = f", block {self.block}" if self.block else ""
        return f"version {self.version} ({decode_version(self.version)}) at {where}:{self.port}{block}"


@dataclass(frozen=True)
class DesiredRecord:
    """What we want on chain for (netuid, hotkey): the extrinsic's parameters."""

    netuid: int
    version: int
    ip: int
    port: int
    ip_type: int

    @classmethod
    def for_address(cls, netuid: int, version: int, address: IPAddress, port: int) -> DesiredRecord:
        """ip as int and ip_type 4/6 derived from the address, exactly as ``ServePrometheus`` does."""
        return cls(netuid=netuid, version=version, ip=int(address), port=port, ip_type=address.version)

    @property
    def record(self) -> PrometheusRecord:
        return PrometheusRecord(version=self.version, ip=self.ip, port=self.port, ip_type=self.ip_type)

    @property
    def address(self) -> str:
        return self.record.address

    def call_params(self) -> dict[str, int]:
        """The ``SubtensorModule.serve_prometheus`` parameters, in the call's argument order."""
        return {
            "netuid": self.netuid,
            "version": self.version,
            "ip": self.ip,
            "port": self.port,
            "ip_type": self.ip_type,
        }


# ---------------------------------------------------------------------------------------------
# Who owns which field of the record, and what we publish


class Role(StrEnum):
    """What the hotkey is on the subnet; decides the default port and whether we serve at all."""

    VALIDATOR = "validator"
    MINER = "miner"


# The exporter a record should point at, by role (the suite's standard ports).
PORT_BY_ROLE: dict[Role, int] = {Role.MINER: 9927, Role.VALIDATOR: 9928}
# The SN27 validator neuron serves bittensor's default axon port (or BT_AXON_PORT).
NEURON_PORT = 8091


class Owner(StrEnum):
    """Whose endpoint the on-chain record carries: the bounded ``owner`` label."""

    OURS = "ours"  # ip, port and ip_type are what this registrar publishes
    NEURON = "neuron"  # the port is the SN27 neuron's (8091 unless --registrar.neuron-port)
    OTHER = "other"  # anything else (another tool, an old configuration)
    NONE = "none"  # no record on chain


class Cause(StrEnum):
    """Why this registrar served: the bounded ``cause`` label of the serve counter."""

    NO_RECORD = "no_record"  # first record, with an explicit --registrar.version
    VERSION = "version"  # an explicit --registrar.version differs from the chain's
    NEURON_RESERVED = "neuron_reserved"  # the neuron served its endpoint over ours
    IP = "ip"  # our address changed (or ip_type)
    PORT = "port"  # our port changed
    FORCED = "forced"  # --force on an unchanged record


@dataclass(frozen=True)
class Target:
    """What we want before reading the chain: ``None`` fields are resolved from the chain.

    ``version`` None keeps the version on chain (it is the neuron's, never this suite's);
    ``port`` None follows the role (9928 validator, 9927 miner).
    """

    netuid: int
    address: IPAddress
    port: int | None = None
    version: int | None = None

    def precheck(self) -> None:
        """What can be refused before reading the chain: the address and any explicit port/version."""
        port = self.port if self.port is not None else PORT_BY_ROLE[Role.VALIDATOR]
        check_locally(DesiredRecord.for_address(self.netuid, self.version or 0, self.address, port))

    def resolve(self, current: PrometheusRecord | None, role: Role) -> DesiredRecord:
        """The concrete record to publish next to ``current``; NO_VERSION when there is nothing to keep."""
        version = self.version
        if version is None:
            if current is None:
                raise LocalCheckError(
                    ExitCode.NO_VERSION,
                    "no Prometheus record on chain to keep the version of: the version is the "
                    "neuron's to publish (the SN27 validator serves it at start-up), so start the "
                    "neuron first or pass --registrar.version",
                )
            version = current.version
        port = self.port if self.port is not None else PORT_BY_ROLE[role]
        return DesiredRecord.for_address(self.netuid, version, self.address, port)


def owner_of(
    record: PrometheusRecord | None, desired: DesiredRecord, neuron_port: int = NEURON_PORT
) -> Owner:
    """Whose endpoint ``record`` carries; the version is not ours to own, so it is not compared."""
    if record is None:
        return Owner.NONE
    if (record.ip, record.port, record.ip_type) == (desired.ip, desired.port, desired.ip_type):
        return Owner.OURS
    if record.port == neuron_port:
        return Owner.NEURON
    return Owner.OTHER


def serve_cause(
    record: PrometheusRecord | None, desired: DesiredRecord, neuron_port: int = NEURON_PORT
) -> Cause:
    """Why a serve of ``desired`` over ``record`` is needed (``FORCED`` when nothing differs)."""
    if record is None:
        return Cause.NO_RECORD
    if record.version != desired.version:
        return Cause.VERSION
    if record.port == neuron_port and record.port != desired.port:
        return Cause.NEURON_RESERVED
    if (record.ip, record.ip_type) != (desired.ip, desired.ip_type):
        return Cause.IP
    if record.port != desired.port:
        return Cause.PORT
    return Cause.FORCED


def check_locally(desired: DesiredRecord) -> None:
    """Raise :class:`LocalCheckError` for anything the pallet would reject (registration aside)."""
    if desired.ip_type not in (4, 6):
        raise LocalCheckError(
            ExitCode.INVALID_IP_TYPE, f"ip_type {desired.ip_type} is invalid: the chain accepts 4 or 6"
        )
    if desired.ip < 0 or desired.ip > U128_MAX or (desired.ip_type == 4 and desired.ip >= U32_MAX):
        raise LocalCheckError(
            ExitCode.IP_OUT_OF_RANGE,
            f"IP value {desired.ip} is out of range for IPv{desired.ip_type} "
            "(the chain rejects IPv4 values >= u32::MAX, i.e. 255.255.255.255)",
        )
    address = ipaddress.IPv4Address(desired.ip) if desired.ip_type == 4 else ipaddress.IPv6Address(desired.ip)
    if address.is_unspecified or address.is_loopback:
        raise LocalCheckError(
            ExitCode.INVALID_IP,
            f"IP {address} is {'unspecified' if address.is_unspecified else 'loopback'}: "
            "the chain rejects it; pass the host's public address with --registrar.ip",
        )
    if not 1 <= desired.port <= U16_MAX:
        raise LocalCheckError(
            ExitCode.INVALID_PORT, f"port {desired.port} is invalid: it must be in 1..{U16_MAX}"
        )
    if not 0 <= desired.version <= U32_MAX:
        raise LocalCheckError(ExitCode.CONFIG, f"version {desired.version} does not fit in u32")


# ---------------------------------------------------------------------------------------------
# Address discovery


class DiscoveryError(Exception):
    """No usable public address could be determined for this host."""


# Documentation prefixes (RFC 5737 / RFC 3849): a UDP connect() only asks the kernel which source
# address its route would use; no packet is sent, and these ranges are never routed anyway.
_PROBE_TARGETS: tuple[tuple[socket.AddressFamily, str], ...] = (
    (socket.AF_INET, "192.0.2.1"),
    (socket.AF_INET6, "2001:db8::1"),
)

Probe = Callable[[socket.AddressFamily, str], str | None]


def udp_route_probe(family: socket.AddressFamily, target: str) -> str | None:
    """The source address the kernel would use to reach ``target``; None without a route."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def discover_ip(probe: Probe = udp_route_probe) -> IPAddress:
    """The host's primary public address (IPv4 first, then IPv6), found without sending packets.

    Refuses private, loopback and link-local results: behind NAT the route's source address is
    not what the world sees, and guessing would publish a useless beacon.
    """
    found: list[str] = []
    for family, target in _PROBE_TARGETS:
        text = probe(family, target)
        if not text:
            continue
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if address.is_global:
            return address
        found.append(str(address))
    if not found:
        raise DiscoveryError(
            "cannot determine this host's IP address (no IPv4 or IPv6 default route); pass --registrar.ip"
        )
    raise DiscoveryError(
        f"the discovered address {', '.join(found)} is private, loopback or link-local, so it is "
        "not what the network sees (NAT?); pass the public address with --registrar.ip"
    )
