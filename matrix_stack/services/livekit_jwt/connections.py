"""Kept-alive HTTPS connections for the egress, each pinned to what the egress policy checked.

Every token request asks the user's homeserver, so a connection per request pays a TCP and TLS
handshake each time. `Connections` keeps one aiohttp session per `Pin` (the checked IP and port, the
SNI name, the Host header, the CA file): a kept connection serves only a request checked to the
same address, verified for the same name with the same CAs, for the same Host. One session per pin
and not one for all: a pool keys its connections by address and SNI name, not by Host or CA file.

aiohttp rather than httpx here: this is the service's hot path, and a kept-alive request costs
about a sixth of the CPU (measured ~80 against ~500 µs per GET on this machine).

Bounded: at most `destinations` sessions (the least recently used goes first, closed once its
requests are done), at most `per_destination` connections each, in use or idle (a request past
that waits for one, within its deadline: a homeserver that holds its connections open delays only
lookups to itself); idle connections are closed after `expiry` seconds unused, and a session unused
that long goes with them. Each request still resolves and checks its name before it
asks for a session (egress.py).
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp

DESTINATIONS = 64
PER_DESTINATION = 32  # connections to one pin: the concurrency a busy homeserver sees from us
EXPIRY = 30.0  # seconds; below the idle timeouts servers commonly use (nginx 75 s, Synapse longer)


@dataclass(frozen=True)
class Pin:
    """What a connection was checked and verified for; it is reused for exactly the same only."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int
    sni: str | None
    host_header: str
    ca_file: str | None


@functools.lru_cache(maxsize=8)
def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The system's CAs and, when given, those in `ca_file` as well (a private CA for internal servers)."""
    # create_default_context(cafile=...) would trust that file alone.
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def new_client(
    ca_file: str | None, expiry: float | None, limit: int = PER_DESTINATION
) -> aiohttp.ClientSession:
    """A session that connects only where its request's URL says (an address the egress checked):
    no proxy from the environment (it would connect by name, beyond the policy's checks), no
    cookies, the body as sent (the egress asks for identity and limits the size itself); at most
    `limit` connections. `expiry` None: each connection used once."""
    connector = aiohttp.TCPConnector(
        ssl=tls_context(ca_file), limit=limit, limit_per_host=0, use_dns_cache=False,
        force_close=expiry is None, keepalive_timeout=expiry if expiry is not None else None,
    )  # fmt: skip
    return aiohttp.ClientSession(
        connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False,
        raise_for_status=False,
    )  # fmt: skip


@asynccontextmanager
async def one_off(pin: Pin) -> AsyncIterator[aiohttp.ClientSession]:
    """A session for one request, closed after it (no `Connections` given)."""
    async with new_client(pin.ca_file, None) as client:
        yield client


@dataclass
class _Kept:
    client: aiohttp.ClientSession
    users: int = 0
    last_used: float = 0.0
    evicted: bool = False  # out of the table; closed by its last user


class Connections:
    """aiohttp sessions by `Pin`, bounded and expiring; `aclose` at shutdown."""

    def __init__(
        self,
        *,
        destinations: int = DESTINATIONS,
        per_destination: int = PER_DESTINATION,
        expiry: float = EXPIRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kept: OrderedDict[Pin, _Kept] = OrderedDict()
        self._destinations = max(destinations, 1)
        self._expiry = expiry
        self._clock = clock
        self._per_destination = max(per_destination, 1)

    def __len__(self) -> int:
        return len(self._kept)

    @asynccontextmanager
    async def client(self, pin: Pin) -> AsyncIterator[aiohttp.ClientSession]:
        """The session for `pin`, made if there is none; the table is tidied on the way."""
        kept, dropped = self._take(pin)
        try:
            for client in dropped:
                await client.close()
            yield kept.client
        finally:
            kept.users -= 1
            kept.last_used = self._clock()
            if kept.evicted and kept.users == 0:
                await kept.client.close()

    def _take(self, pin: Pin) -> tuple[_Kept, list[aiohttp.ClientSession]]:
        now = self._clock()
        # Idle past the expiry: its connections are closed by now; the session goes too.
        expired = [key for key, kept in self._kept.items() if self._idle(kept, now) and key != pin]
        dropped = [self._evict(key) for key in expired]
        kept = self._kept.get(pin)
        if kept is None:
            kept = self._kept[pin] = _Kept(new_client(pin.ca_file, self._expiry, self._per_destination))
        self._kept.move_to_end(pin)
        kept.users += 1
        while len(self._kept) > self._destinations:
            dropped.append(self._evict(next(iter(self._kept))))
        return kept, [client for client in dropped if client is not None]

    def _idle(self, kept: _Kept, now: float) -> bool:
        return kept.users == 0 and now - kept.last_used >= self._expiry

    def _evict(self, pin: Pin) -> aiohttp.ClientSession | None:
        """Out of the table; the client to close now, or None when a request still uses it."""
        kept = self._kept.pop(pin)
        if kept.users:
            kept.evicted = True
            return None
        return kept.client

    async def aclose(self) -> None:
        for client in [self._evict(pin) for pin in list(self._kept)]:
            if client is not None:
                await client.close()
