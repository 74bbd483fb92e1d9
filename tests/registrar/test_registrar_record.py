"""Version encoding, record decoding, local checks and address discovery: pure rules, no chain."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from exporters.registrar.record import (
    DesiredRecord,
    DiscoveryError,
    ExitCode,
    LocalCheckError,
    PrometheusRecord,
    check_locally,
    decode_version,
    discover_ip,
    encode_version,
    parse_version,
    udp_route_probe,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.1.0", 10),
        ("1.9.0", 190),
        ("2.0.0", 200),
        ("1.2.3", 123),
        ("v3.4.5", 345),
        ("1.2", 120),
        ("1.2.3rc1", 123),
    ],
)
def test_versions_encode_as_100_major_plus_10_minor_plus_patch(text, value):
    assert encode_version(text) == value


@pytest.mark.parametrize("text", ["1.10.0", "2.0.10", "1.12.15"])
def test_versions_that_would_collide_are_refused(text):
    # 1.10.0 would give 200, the same as 2.0.0.
    with pytest.raises(ValueError, match="ambiguity"):
        encode_version(text)


def test_an_explicit_integer_version_is_taken_as_is_even_when_a_string_would_be_ambiguous():
    assert parse_version("200") == 200
    assert parse_version("1010") == 1010
    with pytest.raises(ValueError, match="u32"):
        parse_version(str(2**32))
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        parse_version("latest")


def test_a_version_decodes_back_for_log_lines():
    assert decode_version(190) == "1.9.0"


def test_a_chain_record_decodes_and_a_missing_or_default_one_is_none():
    value = {"block": 77, "version": 190, "ip": 3405803783, "port": 9928, "ip_type": 4}
    record = PrometheusRecord.from_chain(value)
    assert record == PrometheusRecord(version=190, ip=3405803783, port=9928, ip_type=4, block=77)
    assert record.address == "203.0.113.7"
    assert PrometheusRecord.from_chain(None) is None
    assert PrometheusRecord.from_chain({"block": 0, "version": 0, "ip": 0, "port": 0, "ip_type": 0}) is None


def test_the_comparison_covers_version_ip_port_and_ip_type_but_not_the_block():
    base = PrometheusRecord(version=10, ip=1, port=2, ip_type=4, block=5)
    assert base.same_endpoint(PrometheusRecord(version=10, ip=1, port=2, ip_type=4, block=999))
    for changed in ({"version": 11}, {"ip": 3}, {"port": 3}, {"ip_type": 6}):
        other = PrometheusRecord(**{"version": 10, "ip": 1, "port": 2, "ip_type": 4, "block": 5, **changed})
        assert not base.same_endpoint(other)


def test_call_params_carry_the_ip_as_an_integer_and_its_type():
    v4 = DesiredRecord.for_address(27, 10, ipaddress.ip_address("1.2.3.4"), 9928)
    v6 = DesiredRecord.for_address(27, 10, ipaddress.ip_address("2001:db8::5"), 9928)
    assert v4.call_params() == {"netuid": 27, "version": 10, "ip": 16909060, "port": 9928, "ip_type": 4}
    assert v6.call_params()["ip"] == int(ipaddress.IPv6Address("2001:db8::5"))
    assert v6.call_params()["ip_type"] == 6


@pytest.mark.parametrize(
    ("ip", "ip_type", "port", "code"),
    [
        (0, 4, 9928, ExitCode.INVALID_IP),
        (int(ipaddress.IPv4Address("127.9.9.9")), 4, 9928, ExitCode.INVALID_IP),
        (1, 6, 9928, ExitCode.INVALID_IP),  # ::1
        (0, 6, 9928, ExitCode.INVALID_IP),  # ::
        (2**32 - 1, 4, 9928, ExitCode.IP_OUT_OF_RANGE),
        (2**32 + 5, 4, 9928, ExitCode.IP_OUT_OF_RANGE),
        (16909060, 5, 9928, ExitCode.INVALID_IP_TYPE),
        (16909060, 4, 0, ExitCode.INVALID_PORT),
        (16909060, 4, 65536, ExitCode.INVALID_PORT),
    ],
)
def test_local_checks_mirror_what_the_pallet_rejects(ip, ip_type, port, code):
    with pytest.raises(LocalCheckError) as caught:
        check_locally(DesiredRecord(netuid=27, version=10, ip=ip, port=port, ip_type=ip_type))
    assert caught.value.code == code


def test_a_valid_record_passes_the_local_checks():
    check_locally(DesiredRecord(netuid=27, version=10, ip=16909060, port=9928, ip_type=4))


def test_discovery_prefers_a_public_ipv4_address():
    seen = []

    def probe(family, target):
        seen.append(family)
        return "8.8.4.4" if family == socket.AF_INET else "2606:4700::1"

    assert discover_ip(probe) == ipaddress.ip_address("8.8.4.4")
    assert seen == [socket.AF_INET]


def test_discovery_falls_back_to_a_public_ipv6_address_behind_a_private_ipv4():
    def probe(family, target):
        return "192.168.1.20" if family == socket.AF_INET else "2606:4700::1"

    assert discover_ip(probe) == ipaddress.ip_address("2606:4700::1")


def test_discovery_refuses_private_addresses_with_a_hint_to_pass_the_ip():
    def probe(family, target):
        return "10.0.0.5" if family == socket.AF_INET else "fe80::1%eth0"

    with pytest.raises(DiscoveryError, match=r"10\.0\.0\.5.*--registrar\.ip"):
        discover_ip(probe)


def test_discovery_without_any_route_says_so():
    with pytest.raises(DiscoveryError, match="no IPv4 or IPv6 default route"):
        discover_ip(lambda family, target: None)


def test_the_udp_probe_reports_a_source_address_without_sending_anything():
    # Loopback has a route on every host; connect() on a UDP socket sends no packet.
    assert udp_route_probe(socket.AF_INET, "127.0.0.1") == "127.0.0.1"
