"""Matrix server-name resolution (server-server API, "Resolving server names") and the OpenID userinfo
lookup built on it. Every request goes through the SSRF-safe egress: the server name is a stranger's.

Server-side counterpart of discovery.py: that finds a client API, this finds where a server's
federation API listens, as the Destinations to try in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import dns.exception
import dns.name
import dns.rdtypes.IN.SRV
import dns.resolver
import httpx

from matrix_stack.services.livekit_jwt import egress
from matrix_stack.services.livekit_jwt.connections import Connections
from matrix_stack.services.livekit_jwt.egress import AddressPolicy, EgressError, EgressRefused

DEFAULT_PORT = 8448
WELL_KNOWN_MAX_BYTES = 50 * 1024
WELL_KNOWN_MAX_REDIRECTS = 3
USERINFO_MAX_BYTES = 16 * 1024  # `{"sub": ...}`: anything near this is not a userinfo answer
# Spec recommendations: 24 h without Cache-Control, at most 48 h, errors up to an hour.
WELL_KNOWN_DEFAULT_TTL = 24 * 3600.0
WELL_KNOWN_MAX_TTL = 48 * 3600.0
WELL_KNOWN_ERROR_TTL = 3600.0
# No answer at all (timeout, connection refused) is likelier passing than an answer saying "none":
# an hour of ignoring a homeserver's delegation for a blip would lock its users out that long.
WELL_KNOWN_UNREACHABLE_TTL = 300.0


class FederationError(Exception):
    """A server name could not be resolved, or its server did not vouch for the user."""


class InvalidServerName(FederationError):
    pass


class UserinfoRejected(FederationError):
    """The homeserver answered, but not with a user of that server."""


@dataclass(frozen=True)
class ServerName:
    host: str  # a DNS name, or an IP address (IPv6 without brackets)
    port: int | None
    ip: egress.IPAddress | None


_SERVER_NAME = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(?P<port>[0-9]{1,5}))?")
_DOTTED_QUAD = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


def override(entry: str) -> tuple[str, Destination]:
    """`server.name=host:port`: that server name's federation API is at host:port (TLS, with the
    server name's host as SNI and the server name as Host)."""
    server_name, sep, target = entry.partition("=")
    if not sep:
        raise InvalidServerName(f"{entry!r} is not server_name=host:port")
    name = parse_server_name(server_name.strip())
    host, colon, port = target.strip().rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise InvalidServerName(f"{entry!r}: the target must be host:port")
    host = host.strip("[]")
    sni = None if name.ip is not None else name.host
    return server_name.strip().lower(), Destination(host, int(port), server_name.strip(), sni)


def parse_server_name(name: str) -> ServerName:
    """Check `name` against the spec's grammar: `[IPv6]`, IPv4 or a DNS name, then an optional port."""
    match = _SERVER_NAME.fullmatch(name)
    if match is None:
        raise InvalidServerName(f"invalid server name {name[:100]!r}")
    host, digits = match["host"], match["port"]
    port = int(digits) if digits is not None else None
    if port is not None and not 1 <= port <= 65535:
        raise InvalidServerName(f"invalid server name {name!r}: port out of range")
    if host.startswith("["):
        try:
            return ServerName(host[1:-1], port, ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise InvalidServerName(f"invalid server name {name!r}: bad IPv6 address") from None
    if _DOTTED_QUAD.fullmatch(host):
        try:
            return ServerName(host, port, ipaddress.IPv4Address(host))
        except ValueError:
            raise InvalidServerName(f"invalid server name {name!r}: bad IPv4 address") from None
    labels = host.split(".")
    # Stricter than the grammar where DNS is: no empty or overlong labels, and no numeric last label,
    # which getaddrinfo would read as an address in a legacy form (`127.1`).
    if len(host) > 255 or not all(0 < len(label) <= 63 for label in labels) or labels[-1].isdigit():
        raise InvalidServerName(f"invalid server name {name!r}: not a DNS name")
    return ServerName(host, port, None)


@dataclass(frozen=True)
class Destination:
    """Where to connect, with the Host header to send and the name the certificate must carry."""

    host_to_connect: str
    port: int
    host_header: str
    sni: str | None  # None: an IP literal, whose certificate must name the IP

    def url(self, path: str) -> str:
        host = f"[{self.host_to_connect}]" if ":" in self.host_to_connect else self.host_to_connect
        return f"https://{host}:{self.port}{path}"


class WellKnownCache:
    """`/.well-known/matrix/server` results by host name: bounded (the least recently stored entry
    goes first) and expiring. A value of None records that the host delegates nowhere."""

    def __init__(self, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, host: str) -> tuple[bool, str | None]:
        """(found, delegated name)."""
        entry = self._entries.get(host.lower())
        if entry is None:
            return False, None
        if entry[1] <= self._clock():
            del self._entries[host.lower()]
            return False, None
        return True, entry[0]

    def put(self, host: str, delegated: str | None, ttl: float) -> None:
        key = host.lower()
        self._entries.pop(key, None)
        if ttl <= 0:
            return
        self._entries[key] = (delegated, self._clock() + ttl)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


_default_cache = WellKnownCache()


def cache_ttl(cache_control: str | None) -> float:
    """Seconds to keep a well-known answer: its max-age, capped; none for no-store or no-cache."""
    ttl = WELL_KNOWN_DEFAULT_TTL
    for directive in (cache_control or "").split(","):
        key, _, value = directive.strip().partition("=")
        key = key.lower()
        if key in ("no-store", "no-cache"):
            return 0.0
        if key == "max-age" and value.strip('"').isdigit():
            ttl = float(value.strip('"'))
    return min(ttl, WELL_KNOWN_MAX_TTL)


class _NoDelegation(FederationError):
    """The well-known answered, but delegates nowhere usable."""


@dataclass(frozen=True)
class _Lookup:
    """What every request of one resolution shares."""

    policy: AddressPolicy
    ca_file: str | Path | None
    dns_servers: Sequence[str]
    deadline: float
    connections: Connections | None

    def remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.001)

    async def get(
        self, url: str, host_header: str, sni: str | None, max_bytes: int, redirects: bool
    ) -> egress.Response:
        return await egress.https_get(
            url,
            policy=self.policy,
            host_header=host_header,
            sni_hostname=sni,
            max_bytes=max_bytes,
            timeout=self.remaining(),
            ca_file=self.ca_file,
            dns_servers=self.dns_servers,
            redirects=redirects,
            connections=self.connections,
        )


async def _fetch_well_known(hostname: str, port: int, lookup: _Lookup) -> tuple[str, float]:
    """The delegated server name and how long to keep it. Redirects: at most three, https only."""
    url = httpx.URL(f"https://{hostname}:{port}/.well-known/matrix/server")
    host_header: str = hostname
    sni: str | None = hostname
    for hop in range(WELL_KNOWN_MAX_REDIRECTS + 1):
        response = await lookup.get(str(url), host_header, sni, WELL_KNOWN_MAX_BYTES, redirects=True)
        if not 300 <= response.status < 400:
            break
        location = response.headers.get("location")
        if not location:
            raise _NoDelegation(f"{hostname}: well-known redirect without a Location")
        if hop == WELL_KNOWN_MAX_REDIRECTS:
            raise _NoDelegation(
                f"{hostname}: well-known redirected more than {WELL_KNOWN_MAX_REDIRECTS} times"
            )
        try:
            url = url.join(location)
        except httpx.InvalidURL:
            raise _NoDelegation(f"{hostname}: well-known redirect to an invalid URL") from None
        if url.scheme != "https":
            raise _NoDelegation(f"{hostname}: well-known redirect to {egress.describe(url)}, not https")
        host_header, sni = url.netloc.decode("ascii"), None
    if response.status != 200:
        raise _NoDelegation(f"{hostname}: well-known answered {response.status}")
    try:
        document = response.json()
    except ValueError:
        raise _NoDelegation(f"{hostname}: well-known is not JSON") from None
    delegated = document.get("m.server") if isinstance(document, dict) else None
    if not isinstance(delegated, str):
        raise _NoDelegation(f"{hostname}: well-known has no m.server string")
    parse_server_name(delegated)
    return delegated, cache_ttl(response.headers.get("cache-control"))


async def _well_known(hostname: str, port: int, lookup: _Lookup, cache: WellKnownCache) -> str | None:
    key = hostname if port == 443 else f"{hostname}:{port}"
    found, delegated = cache.get(key)
    if found:
        return delegated
    try:
        delegated, ttl = await _fetch_well_known(hostname, port, lookup)
    except EgressRefused:
        return None  # not kept: it depends on the policy, and no connection was made
    except (_NoDelegation, InvalidServerName):
        cache.put(key, None, WELL_KNOWN_ERROR_TTL)
        return None
    except EgressError:
        cache.put(key, None, WELL_KNOWN_UNREACHABLE_TTL)
        return None
    cache.put(key, delegated, ttl)
    return delegated


def _srv_order(records: list[dns.rdtypes.IN.SRV.SRV]) -> list[dns.rdtypes.IN.SRV.SRV]:
    """RFC 2782: lowest priority first; within one, a random order weighted by weight (weighted
    sampling by key u^(1/w); weight 0 goes last, as rarely chosen first)."""

    def key(record: dns.rdtypes.IN.SRV.SRV) -> tuple[int, float]:
        weight = record.weight
        return record.priority, -(random.random() ** (1 / weight)) if weight else 0.0

    return sorted(records, key=key)


async def _srv(hostname: str, lookup: _Lookup) -> list[tuple[str, int]]:
    """(target, port) of `_matrix-fed._tcp`, else the deprecated `_matrix._tcp`; none if neither."""
    try:
        resolver = egress.dns_resolver(tuple(lookup.dns_servers))
    except dns.exception.DNSException:  # no resolv.conf: no SRV, as with any other DNS failure
        return []
    for service in ("_matrix-fed._tcp", "_matrix._tcp"):
        try:
            answer = await resolver.resolve(f"{service}.{hostname}", "SRV", lifetime=lookup.remaining())
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException:
            # A broken resolver is no SRV record: the :8448 fallback needs DNS too, and fails clearly.
            continue
        records = _srv_order([rdata for rdata in answer if isinstance(rdata, dns.rdtypes.IN.SRV.SRV)])
        usable = [
            (r.target.to_text(omit_final_dot=True), r.port) for r in records if r.target != dns.name.root
        ]
        if records and not usable:  # RFC 2782: a target of "." means no such service there
            raise FederationError(f"{hostname}: SRV says there is no federation service")
        if usable:
            return usable
    return []


async def _without_well_known(name: ServerName, host_header: str, lookup: _Lookup) -> list[Destination]:
    if name.ip is not None:
        return [Destination(str(name.ip), name.port or DEFAULT_PORT, host_header, None)]
    if name.port is not None:
        return [Destination(name.host, name.port, host_header, name.host)]
    targets = await _srv(name.host, lookup)
    if targets:
        return [Destination(target, port, host_header, name.host) for target, port in targets]
    return [Destination(name.host, DEFAULT_PORT, host_header, name.host)]


async def resolve_server_name(
    server_name: str,
    *,
    policy: AddressPolicy,
    ca_file: str | Path | None = None,
    timeout: float = 10.0,
    dns_servers: Sequence[str] = (),
    cache: WellKnownCache | None = None,
    well_known_port: int = 443,
    overrides: Mapping[str, Destination] | None = None,
    connections: Connections | None = None,
) -> list[Destination]:
    """Where `server_name`'s federation API is, in the order to try. `well_known_port` is 443 but for
    tests, which cannot listen there. `overrides` fixes where some server names are reached (the
    local homeserver inside the cluster), skipping resolution; the egress policy still applies.
    `connections` keeps the egress's connections (the well-known's) for the next lookup."""
    name = parse_server_name(server_name)
    if overrides and (fixed := overrides.get(server_name.lower())) is not None:
        return [fixed]
    lookup = _Lookup(policy, ca_file, dns_servers, time.monotonic() + timeout, connections)
    if name.ip is not None or name.port is not None:
        return await _without_well_known(name, server_name, lookup)
    delegated = await _well_known(
        name.host, well_known_port, lookup, _default_cache if cache is None else cache
    )
    if delegated is not None:
        # The delegated name: no second well-known; Host is that name, the certificate its host's.
        return await _without_well_known(parse_server_name(delegated), delegated, lookup)
    return await _without_well_known(name, server_name, lookup)


_ERRCODE = re.compile(r"M_[A-Z_]{1,64}")


def _user_id(server_name: str, response: egress.Response) -> str:
    """The `sub` of a userinfo answer, when it is a user of `server_name` (and not of any other)."""
    document: object = None
    with contextlib.suppress(ValueError):
        document = response.json()
    if response.status != 200:
        errcode = document.get("errcode") if isinstance(document, dict) else None
        # Only a well-formed errcode: the body is the remote's to fill, with the token for all we know.
        shown = f" ({errcode})" if isinstance(errcode, str) and _ERRCODE.fullmatch(errcode) else ""
        raise UserinfoRejected(f"{server_name}: userinfo answered {response.status}{shown}")
    sub = document.get("sub") if isinstance(document, dict) else None
    if not isinstance(sub, str) or not sub.startswith("@") or ":" not in sub:
        raise UserinfoRejected(f"{server_name}: userinfo answer has no user ID in sub")
    if sub.split(":", 1)[1] != server_name:
        raise UserinfoRejected(f"{server_name}: userinfo vouches for {sub[:100]!r}, of another server")
    return sub


async def openid_userinfo(
    server_name: str,
    access_token: str,
    *,
    policy: AddressPolicy,
    ca_file: str | Path | None = None,
    timeout: float = 10.0,
    dns_servers: Sequence[str] = (),
    cache: WellKnownCache | None = None,
    well_known_port: int = 443,
    overrides: Mapping[str, Destination] | None = None,
    connections: Connections | None = None,
) -> str:
    """The Matrix user ID an OpenID access token belongs to, as `server_name`'s homeserver says.

    Destinations are tried in order until one answers; `timeout` covers resolution and all of them.
    Raises EgressRefused when the policy refused every destination, UserinfoRejected when the server
    answered without vouching for a user of its own, FederationError otherwise.
    """
    parse_server_name(server_name)
    deadline = time.monotonic() + timeout
    path = f"/_matrix/federation/v1/openid/userinfo?access_token={quote(access_token, safe='')}"
    refusals: list[EgressRefused] = []
    failures: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            destinations = await resolve_server_name(
                server_name,
                policy=policy,
                ca_file=ca_file,
                timeout=timeout,
                dns_servers=dns_servers,
                cache=cache,
                well_known_port=well_known_port,
                overrides=overrides,
                connections=connections,
            )
            lookup = _Lookup(policy, ca_file, dns_servers, deadline, connections)
            for destination in destinations:
                try:
                    response = await lookup.get(
                        destination.url(path),
                        destination.host_header,
                        destination.sni,
                        USERINFO_MAX_BYTES,
                        False,
                    )
                except EgressRefused as exc:
                    refusals.append(exc)
                    continue
                except EgressError as exc:
                    failures.append(str(exc))
                    continue
                return _user_id(server_name, response)
    except TimeoutError:
        failures.append(f"no answer within {timeout:g} s")
    if refusals and not failures:
        raise refusals[0]
    reasons = "; ".join([*failures, *(str(exc) for exc in refusals)])
    raise FederationError(f"{server_name}: userinfo lookup failed: {reasons}")
