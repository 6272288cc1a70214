"""The SSRF-safe egress's address policy, Matrix server names and the well-known cache, as pure
functions: no server, no DNS (the same code against real servers and dnsmasq:
tests/integration/test_federation_egress.py)."""

from __future__ import annotations

import pytest
from dns.nameserver import Do53Nameserver

from matrix_stack.services.livekit_jwt import egress, federation
from matrix_stack.services.livekit_jwt.egress import AddressPolicy
from matrix_stack.services.livekit_jwt.federation import InvalidServerName, WellKnownCache

# -- the address policy --------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("::7f00:1", "loopback"), ("64:ff9b::7f00:1", "loopback"),
    ("2002:7f00:1::1", "loopback"), ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    ("10.0.0.1", "private"), ("10.255.255.255", "private"), ("172.16.0.1", "private"),
    ("172.31.255.255", "private"), ("192.168.0.1", "private"), ("192.168.255.255", "private"),
    ("::ffff:10.1.2.3", "private"), ("::ffff:192.168.1.1", "private"), ("64:ff9b::c0a8:101", "private"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"), ("fec0::1", "private"),
    ("169.254.169.254", "metadata"), ("fd00:ec2::254", "metadata"), ("100.100.100.200", "metadata"),
    ("::ffff:169.254.169.254", "metadata"), ("64:ff9b::a9fe:a9fe", "metadata"),
    ("169.254.0.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%1", "link-local"),
    ("100.64.0.1", "shared"), ("100.127.255.254", "shared"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"), ("::", "unspecified"),
    ("255.255.255.255", "broadcast"), ("240.0.0.1", "reserved"), ("198.18.0.1", "reserved"),
    ("192.0.2.1", "documentation"), ("203.0.113.9", "documentation"), ("2001:db8::1", "documentation"),
    ("64:ff9b:1::1", "reserved"), ("100::1", "reserved"), ("::ffff:0:7f00:1", "reserved"),
    ("1::1", "reserved"),
]  # fmt: skip
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "100.63.255.255", "100.128.0.1", "172.32.0.1",
          "169.253.255.255", "2606:4700:4700::1111", "2a00:1450:4001:82b::200e", "::ffff:8.8.8.8",
          "64:ff9b::808:808", "2002:808:808::1"]  # fmt: skip


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_internal_addresses_are_refused(address: str, kind: str) -> None:
    policy = AddressPolicy()
    refused = policy.classify(address)
    assert refused is not None
    assert refused[0] == kind, refused
    assert policy.refusal(address) == refused[1]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy().refusal(address) is None


def test_an_allowed_network_lets_its_addresses_through() -> None:
    policy = AddressPolicy(["10.1.0.0/16", "fd00:1::/32", "127.0.0.1", " ", "HS.Internal:8448"])
    assert policy.refusal("10.1.2.3") is None
    assert policy.refusal("::ffff:10.1.2.3") is None  # the same address, IPv4-mapped
    assert policy.refusal("10.2.0.1") == "private (RFC 1918)"
    assert policy.refusal("fd00:1::5") is None
    assert policy.refusal("fd00:2::5") is not None
    assert policy.refusal("127.0.0.1") is None
    assert policy.refusal("127.0.0.2") is not None
    assert policy.name_allowed("hs.internal:8448")
    assert policy.name_allowed("HS.INTERNAL:8448")
    assert not policy.name_allowed("hs.internal")
    assert not policy.name_allowed("hs.internal:443")
    for bad in ("10.0.0.0/33", "https://hs.internal", "hs internal"):
        with pytest.raises(ValueError, match="neither a CIDR nor a server name"):
            AddressPolicy([bad])


def test_dns_servers_are_addresses_with_optional_ports() -> None:
    resolver = egress.dns_resolver(("127.0.0.1:5353", "[::1]:53", "::1", "10.0.0.1"))
    assert [(server.address, server.port) for server in resolver.nameservers if isinstance(server, Do53Nameserver)] == [
        ("127.0.0.1", 5353), ("::1", 53), ("::1", 53), ("10.0.0.1", 53)
    ]  # fmt: skip
    for bad in ("dns.example:53", "127.0.0.1:dns", "[::1]53"):
        with pytest.raises(ValueError, match="DNS server"):
            egress.dns_resolver((bad,))


# -- server names and the well-known cache --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "host", "port", "ip"),
    [("example.org", "example.org", None, False), ("Example.org:8448", "Example.org", 8448, False),
     ("1.2.3.4", "1.2.3.4", None, True), ("1.2.3.4:1", "1.2.3.4", 1, True), ("[::1]", "::1", None, True),
     ("[2001:db8::1]:65535", "2001:db8::1", 65535, True), ("a-b.c-d", "a-b.c-d", None, False),
     ("localhost", "localhost", None, False)],
)  # fmt: skip
def test_valid_server_names(name: str, host: str, port: int | None, ip: bool) -> None:
    parsed = federation.parse_server_name(name)
    assert (parsed.host, parsed.port, parsed.ip is not None) == (host, port, ip)


@pytest.mark.parametrize(
    "name",
    ["", "example.org:", "example.org:0", "example.org:65536", "example.org:123456", "exa mple.org",
     "user@example.org", "example.org/path", "https://example.org", "[::1", "::1", "[zz::1]", "[::1%lo]",
     "999.1.1.1", "127.000.000.001", "a..b", ".org", "org.", "127.1", "0x7f.1", "2130706433",
     "ex_ample.org", "é.org", "a" * 64 + ".org"],
)  # fmt: skip
def test_invalid_server_names(name: str) -> None:
    with pytest.raises(InvalidServerName):
        federation.parse_server_name(name)


def test_well_known_cache_lifetimes_and_bound() -> None:
    assert federation.cache_ttl(None) == 24 * 3600
    assert federation.cache_ttl("public, max-age=600") == 600
    assert federation.cache_ttl("max-age=999999999") == 48 * 3600
    assert federation.cache_ttl("max-age=bogus") == 24 * 3600
    assert federation.cache_ttl("no-store") == federation.cache_ttl("No-Cache") == 0
    now = [0.0]
    cache = WellKnownCache(max_entries=2, clock=lambda: now[0])
    cache.put("a.example", "hs.a.example", 10)
    cache.put("b.example", None, 20)
    assert cache.get("A.example") == (True, "hs.a.example")
    assert cache.get("b.example") == (True, None)  # a cached "delegates nowhere"
    cache.put("c.example", "hs.c.example", 30)
    assert len(cache) == 2
    assert cache.get("a.example") == (False, None)
    now[0] = 25
    assert cache.get("b.example") == (False, None)
    assert cache.get("c.example") == (True, "hs.c.example")
    cache.put("c.example", "elsewhere", 0)  # no-store: dropped, not kept
    assert cache.get("c.example") == (False, None)
