"""SSRF-safe outbound HTTPS for requests whose destination a stranger chose.

`AddressPolicy` says which addresses may be reached: none that are internal (loopback, private,
link-local, shared, metadata, ...) unless the operator allows a network or a server name. `https_get`
makes one GET under that policy: it resolves the host itself, checks every address, and connects to a
checked address literally, so a DNS answer that changes between the check and the connect (rebinding)
cannot send it elsewhere; TLS is still verified for the host name. With `Connections` (connections.py)
a kept connection is reused, only for the same checked address, SNI name, Host and CAs. No redirect
is followed, the body is size-limited and the whole request has one deadline.

Messages never carry a URL's query string: federation requests put an access token there.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
import httpx
import yarl

from matrix_stack.services.livekit_jwt.connections import Connections, Pin, one_off

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressError(Exception):
    """An outbound request failed: DNS, connection, TLS, timeout, size, or an unexpected redirect."""


class EgressRefused(EgressError):
    """The egress policy refused the destination. `kind` is a short category (a metric label)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class _Range:
    network: Network
    kind: str
    what: str


def _ranges(*rows: tuple[str, str, str]) -> tuple[_Range, ...]:
    return tuple(_Range(ipaddress.ip_network(cidr), kind, what) for cidr, kind, what in rows)


# First match wins, so the narrow ranges with the better reason (metadata) come before the wide ones.
_REFUSED_V4 = _ranges(
    ("169.254.169.254/32", "metadata", "the cloud metadata service"),
    ("100.100.100.200/32", "metadata", "the cloud metadata service (Alibaba)"),
    ("0.0.0.0/8", "unspecified", "'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", "private", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared", "shared address space (CGNAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback", "loopback"),
    ("169.254.0.0/16", "link-local", "link-local"),
    ("172.16.0.0/12", "private", "private (RFC 1918)"),
    ("192.0.0.0/24", "reserved", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "reserved", "6to4 relay anycast"),
    ("192.168.0.0/16", "private", "private (RFC 1918)"),
    ("198.18.0.0/15", "reserved", "benchmarking"),
    ("198.51.100.0/24", "documentation", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast", "multicast"),
    ("255.255.255.255/32", "broadcast", "broadcast"),
    ("240.0.0.0/4", "reserved", "reserved (240.0.0.0/4)"),
)
_REFUSED_V6 = _ranges(
    ("::/128", "unspecified", "unspecified"),
    ("::1/128", "loopback", "loopback"),
    ("fd00:ec2::254/128", "metadata", "the cloud metadata service (AWS)"),
    ("64:ff9b:1::/48", "reserved", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "reserved", "discard-only"),
    ("2001:2::/48", "reserved", "benchmarking"),
    ("2001:10::/28", "reserved", "ORCHID"),
    ("2001:20::/28", "reserved", "ORCHIDv2"),
    ("2001:db8::/32", "documentation", "documentation"),
    ("3fff::/20", "documentation", "documentation (RFC 9637)"),
    ("fc00::/7", "private", "unique local (fc00::/7)"),
    ("fe80::/10", "link-local", "link-local"),
    ("fec0::/10", "private", "site-local"),
    ("ff00::/8", "multicast", "multicast"),
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# An allow-list name: a server name as Matrix writes it, `[IPv6]`, IPv4 or DNS name, optional port.
_NAME = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?", re.IGNORECASE)


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, list[ipaddress.IPv4Address]] | None:
    """The IPv4 addresses an IPv6 address stands for, which is what a connection to it reaches."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", [ip.ipv4_mapped]
    if ip in _NAT64:
        return "NAT64", [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _COMPATIBLE and int(ip) > 1:  # :: and ::1 are themselves, not IPv4-compatible
        return "IPv4-compatible", [ipaddress.IPv4Address(int(ip))]
    if ip.sixtofour is not None:
        return "6to4", [ip.sixtofour]
    if ip.teredo is not None:
        return "Teredo", list(ip.teredo)
    return None


class AddressPolicy:
    """Which addresses outbound requests may reach.

    `allow` holds CIDRs (v4 or v6; a bare address is a /32 or /128), whose addresses are reachable
    although internal, and server names (`hs.internal`, `hs.internal:8448`), matched exactly and
    case-insensitively against the name a request is made for, which may then reach any address: the
    operator vouches for that name's DNS and delegation, e.g. an internal homeserver.
    """

    def __init__(self, allow: Sequence[str] = ()) -> None:
        self._networks: list[Network] = []
        self._names: set[str] = set()
        for raw in allow:
            item = raw.strip()
            if not item:
                continue
            try:
                self._networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            if not _NAME.fullmatch(item):
                raise ValueError(f"egress allow-list: {item!r} is neither a CIDR nor a server name")
            self._names.add(item.lower())

    def name_allowed(self, server_name: str) -> bool:
        return server_name.lower() in self._names

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == network.version and ip in network for network in self._networks)

    def classify(self, ip: IPAddress | str) -> tuple[str, str] | None:
        """(kind, reason) when `ip` is refused, None when it may be reached."""
        address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if self._allowed(address):
            return None
        if isinstance(address, ipaddress.IPv4Address):
            return self._classify_v4(address)
        embedded = _embedded_v4(address)
        if embedded is not None:
            form, v4s = embedded
            for v4 in v4s:
                refused = None if self._allowed(v4) else self._classify_v4(v4)
                if refused is not None:
                    return refused[0], f"{refused[1]} ({form} form of {v4})"
            if form in ("IPv4-mapped", "NAT64", "IPv4-compatible"):
                return None  # it reaches a public IPv4 address; outside 2000::/3 for that reason only
        for row in _REFUSED_V6:
            if address in row.network:
                return row.kind, row.what
        if address not in _GLOBAL_UNICAST_V6:
            return "reserved", "reserved (outside global unicast 2000::/3)"
        return None

    @staticmethod
    def _classify_v4(ip: ipaddress.IPv4Address) -> tuple[str, str] | None:
        for row in _REFUSED_V4:
            if ip in row.network:
                return row.kind, row.what
        return None

    def refusal(self, ip: IPAddress | str) -> str | None:
        """Why `ip` may not be reached, or None when it may."""
        refused = self.classify(ip)
        return None if refused is None else refused[1]


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]  # case-insensitive names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except RecursionError:  # nested past the parser's depth: not JSON we take
            raise ValueError("JSON nested too deeply") from None


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return None


def _nameserver(spec: str) -> dns.nameserver.Do53Nameserver:
    """`host[:port]`, the host an IP address (IPv6 in brackets when a port follows)."""
    host, port = spec, 53
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ValueError(f"DNS server {spec!r}: expected host[:port]")
            port = int(rest[1:])
    elif spec.count(":") == 1:
        host, _, number = spec.partition(":")
        if not number.isdigit():
            raise ValueError(f"DNS server {spec!r}: expected host[:port]")
        port = int(number)
    if ip_literal(host) is None:
        raise ValueError(f"DNS server {spec!r}: the host must be an IP address")
    return dns.nameserver.Do53Nameserver(host, port)


@functools.lru_cache(maxsize=16)
def dns_resolver(servers: tuple[str, ...] = ()) -> dns.asyncresolver.Resolver:
    """A resolver asking `servers` (`host[:port]`), or the system's (resolv.conf) when there are none."""
    if not servers:
        return dns.asyncresolver.Resolver()
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [_nameserver(spec) for spec in servers]
    return resolver


async def _query(
    resolver: dns.asyncresolver.Resolver, host: str, rdtype: str, timeout: float
) -> list[IPAddress] | str:
    """The addresses of one type, or why the lookup failed; a name without them has none."""
    try:
        answer = await resolver.resolve(host, rdtype, lifetime=timeout)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        return f"{rdtype}: {exc}"
    return [ipaddress.ip_address(rdata.to_text()) for rdata in answer]


async def resolve_addresses(
    host: str, port: int, *, dns_servers: Sequence[str], timeout: float
) -> list[IPAddress]:
    """Every address `host` has, IPv4 first: getaddrinfo (hosts file and all) unless DNS servers are
    configured, then A and AAAA from those."""
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    found: list[IPAddress] = []
    if dns_servers:
        resolver = dns_resolver(tuple(dns_servers))
        answers = await asyncio.gather(*(_query(resolver, host, rdtype, timeout) for rdtype in ("A", "AAAA")))
        found = [ip for answer in answers if isinstance(answer, list) for ip in answer]
        failures = [answer for answer in answers if isinstance(answer, str)]
        if not found and failures:
            raise EgressError(f"{host}: DNS lookup failed: {'; '.join(failures)}")
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise EgressError(f"{host}: cannot resolve: {exc.strerror}") from None
        found = [ipaddress.ip_address(info[4][0]) for info in infos]
        found.sort(key=lambda ip: ip.version)
    unique = list(dict.fromkeys(found))
    if not unique:
        raise EgressError(f"{host}: no address")
    return unique


def describe(url: httpx.URL) -> str:
    """The URL fit for a log line: without its query, which may carry a token."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def _scrub(text: str, url: httpx.URL) -> str:
    for _, value in url.params.multi_items():
        if len(value) >= 4:
            text = text.replace(value, "…").replace(quote(value, safe=""), "…")
    if url.query:
        text = text.replace(url.query.decode("ascii"), "…")
    return text


def _failure(exc: Exception, url: httpx.URL) -> str:
    detail = str(exc)
    return _scrub(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, url)


async def https_get(url: str, **options: Any) -> Response:
    """GET an https URL under the policy: `https_request("GET", url, ...)`."""
    return await https_request("GET", url, **options)


async def https_request(
    method: str,
    url: str,
    *,
    policy: AddressPolicy,
    host_header: str | None = None,
    sni_hostname: str | None = None,
    max_bytes: int = 64 * 1024,
    timeout: float = 10.0,
    ca_file: str | Path | None = None,
    dns_servers: Sequence[str] = (),
    redirects: bool = False,
    json_body: Any = None,
    connections: Connections | None = None,
) -> Response:
    """`method` an https URL under `policy`, within `timeout` seconds all told (with `json_body` as
    the request's JSON body, if given), over a kept connection of `connections` when it has one for
    the checked address, else a new one (kept there if given).

    `host_header` (default: the URL's host[:port]) is the name the request is for, and what the
    allow-list's names are matched against; `sni_hostname` is the name the certificate must be valid
    for (default: the URL's host; an IP literal means no SNI and an IP certificate). A 3xx raises
    unless `redirects`, when it is returned for the caller to judge. Any status else is returned.
    """
    target = httpx.URL(url)
    where = describe(target)
    if target.scheme != "https":
        raise EgressRefused(f"{where}: only https is allowed", "scheme")
    host = target.host
    port = target.port or 443
    name = host_header or target.netloc.decode("ascii")
    sni = sni_hostname or (None if ip_literal(host) else host)
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve_addresses(host, port, dns_servers=dns_servers, timeout=timeout)
            if not policy.name_allowed(name):
                # All of them: a name with one public and one internal address is refused outright.
                for address in addresses:
                    refused = policy.classify(address)
                    if refused is not None:
                        kind, reason = refused
                        shown = (
                            str(address) if str(address) == host else f"{host} resolves to {address}, which"
                        )
                        raise EgressRefused(
                            f"{where}: {shown} is {reason}; refused by the egress policy", kind
                        )
            pins = [Pin(address, port, sni, name, str(ca_file) if ca_file else None) for address in addresses]
            return await _send(method, target, pins, max_bytes, timeout, redirects, json_body, connections)
    except TimeoutError:
        raise EgressError(f"{where}: no answer within {timeout:g} s") from None


async def _send(
    method: str,
    target: httpx.URL,
    pins: list[Pin],
    max_bytes: int,
    timeout: float,
    redirects: bool,
    json_body: Any,
    connections: Connections | None,
) -> Response:
    where = describe(target)
    failures: list[str] = []
    for pin in pins:
        async with one_off(pin) if connections is None else connections.client(pin) as client:
            # The checked address itself, so nothing resolves the name again; the URL as it is, so
            # nothing re-encodes its query.
            url = yarl.URL(str(target.copy_with(host=str(pin.address))), encoded=True)
            options: dict[str, Any] = {
                # identity: a compressed answer would be inflated a whole read at a time before the
                # size limit saw it
                "headers": {"Host": pin.host_header, "Accept-Encoding": "identity"},
                # the name the certificate must be valid for; none: the IP literal, and no SNI
                "server_hostname": pin.sni,
                "json": json_body,
                "allow_redirects": False,
                "timeout": aiohttp.ClientTimeout(total=timeout),
            }
            try:
                # A connection the server closed as we sent on it (a kept one past its idle timeout):
                # aiohttp itself asks a GET once more, on a new connection, as browsers do; a POST,
                # which may have been acted on, never.
                response = await client.request(method, url, **options)
            except aiohttp.ClientConnectorError as exc:  # refused, unreachable, TLS failed: the next address
                failures.append(f"{pin.address}: {_failure(exc, target)}")
                continue
            except aiohttp.ClientError as exc:
                raise EgressError(f"{where} ({pin.address}): {_failure(exc, target)}") from None
            async with response:
                return await _read(response, where, max_bytes, redirects, target)
    raise EgressError(f"{where}: cannot connect: {'; '.join(failures)}")


async def _read(
    response: aiohttp.ClientResponse, where: str, max_bytes: int, redirects: bool, url: httpx.URL
) -> Response:
    status = response.status
    if 300 <= status < 400 and not redirects:
        raise EgressError(f"{where}: answered {status}, a redirect, which is not followed")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise EgressError(f"{where}: response of {declared} bytes, over the limit of {max_bytes}")
    if response.headers.get("content-encoding", "identity").lower() not in ("identity", ""):
        raise EgressError(
            f"{where}: a {response.headers['content-encoding']} body, though identity was asked"
        )
    body = bytearray()
    try:
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > max_bytes:
                raise EgressError(f"{where}: response over the limit of {max_bytes} bytes")
    except aiohttp.ClientError as exc:
        raise EgressError(f"{where}: {_failure(exc, url)}") from None
    return Response(status, response.headers, bytes(body))
