"""Opening a connection to a backend the way it is configured: TCP, an optional PROXY protocol v2
header, then LDAPS or StartTLS. Health checks and proxied sessions both come through here, so a check
proves exactly the path a login takes."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import struct
from collections.abc import Callable
from typing import TypeVar, cast

from matrix_stack.services.ldap_proxy import ber
from matrix_stack.services.ldap_proxy.config import STARTTLS_OID, Backend, UpstreamTls

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# message id of the proxy's own StartTLS on a fresh connection (nothing else is outstanding then)
STARTTLS_MESSAGE_ID = 1


class UpstreamError(Exception):
    """The backend could not be reached or refused to speak TLS; the message names why."""


class PduProtocol(asyncio.Protocol):
    """A connection that can be read PDU by PDU while it is being set up (StartTLS, health checks).
    Sessions subclass it and switch to relaying once set up."""

    max_pdu_bytes = 1024 * 1024

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._wake()

    def eof_received(self) -> bool | None:
        self._closed = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read_pdu(self) -> bytes:
        """The next whole PDU; raises UpstreamError if the peer closes or sends garbage."""
        while True:
            try:
                length = ber.pdu_length(self._buffer)
            except ber.BerError as exc:
                raise UpstreamError(f"not LDAP: {exc}") from exc
            if length > self.max_pdu_bytes:
                raise UpstreamError(f"a response of {length} bytes")
            if 0 <= length <= len(self._buffer):
                pdu = bytes(self._buffer[:length])
                del self._buffer[:length]
                return pdu
            if self._closed:
                raise UpstreamError("the backend closed the connection")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None

    @property
    def closed(self) -> bool:
        return self._closed

    def take_buffer(self) -> bytes:
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


P = TypeVar("P", bound=PduProtocol)


def client_context(backend: Backend) -> ssl.SSLContext | None:
    if backend.tls is UpstreamTls.none:
        return None
    context = ssl.create_default_context(cafile=str(backend.ca_file) if backend.ca_file else None)
    if not backend.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def proxy_v2_header(source: tuple[str, int] | None, destination: tuple[str, int] | None) -> bytes:
    """PROXY protocol v2 (haproxy's proxy-protocol.txt 2.2): PROXY command over TCP with both
    addresses, or LOCAL when they are unknown."""
    if source is None or destination is None:
        return PROXY_V2_SIGNATURE + bytes((0x20, 0x00)) + struct.pack("!H", 0)
    src = ipaddress.ip_address(source[0])
    dst = ipaddress.ip_address(destination[0])
    if src.version != dst.version:  # a v4 client on a v6 socket: present both as v6
        src = src if src.version == 6 else ipaddress.IPv6Address(f"::ffff:{src}")
        dst = dst if dst.version == 6 else ipaddress.IPv6Address(f"::ffff:{dst}")
    family = 0x11 if src.version == 4 else 0x21
    body = src.packed + dst.packed + struct.pack("!HH", source[1], destination[1])
    return PROXY_V2_SIGNATURE + bytes((0x21, family)) + struct.pack("!H", len(body)) + body


async def connect(
    backend: Backend,
    factory: Callable[[], P],
    context: ssl.SSLContext | None,
    *,
    client: tuple[str, int] | None = None,
    local: tuple[str, int] | None = None,
) -> tuple[asyncio.Transport, P]:
    """A set-up connection to `backend`. The caller bounds it with its timeout."""
    loop = asyncio.get_running_loop()
    host, port = backend.address
    try:
        transport, protocol = await loop.create_connection(factory, host, port)
    except OSError as exc:
        raise UpstreamError(f"connect {host}:{port}: {exc.strerror or exc}") from exc
    try:
        if backend.proxy_protocol:
            transport.write(proxy_v2_header(client, local))
        if backend.tls is UpstreamTls.starttls:
            transport.write(ber.extended_request(STARTTLS_MESSAGE_ID, STARTTLS_OID))
            pdu = await protocol.read_pdu()
            env = ber.envelope(pdu)
            answer = env.op == ber.EXTENDED_RESPONSE and env.message_id == STARTTLS_MESSAGE_ID
            code = ber.result_code(pdu, env) if answer else -1
            if code != ber.SUCCESS:
                raise UpstreamError(f"StartTLS refused by {backend.name}: {ber.result_name(code)}")
            if protocol.take_buffer():  # bytes before the handshake would pass as if under TLS
                raise UpstreamError(f"{backend.name} sent data after its StartTLS response")
        if context is not None:
            server_name = backend.server_name or host
            try:
                upgraded = await loop.start_tls(transport, protocol, context, server_hostname=server_name)
            except (ssl.SSLError, ssl.CertificateError, ConnectionError) as exc:
                raise UpstreamError(f"TLS with {backend.name} ({server_name}): {exc}") from exc
            if upgraded is None:
                raise UpstreamError(f"TLS with {backend.name}: the connection closed")
            transport = upgraded
            protocol.transport = transport
    except ber.BerError as exc:
        transport.abort()
        raise UpstreamError(f"{backend.name} answered StartTLS with garbage: {exc}") from exc
    except (OSError, ValueError) as exc:  # a socket option, a PROXY header's addresses
        transport.abort()
        raise UpstreamError(f"setting up the connection to {backend.name}: {exc}") from exc
    except BaseException:
        transport.abort()
        raise
    return transport, protocol
