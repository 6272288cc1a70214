"""One LDAP-level health check over the backend's own TLS path: an anonymous bind (haproxy's
`ldap-check`), a service-account bind, or a rootDSE search. A backend that accepts TCP and never
answers fails by the timeout."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from matrix_stack.services.ldap_proxy import ber
from matrix_stack.services.ldap_proxy.config import Backend, CheckType
from matrix_stack.services.ldap_proxy.upstream import PduProtocol, UpstreamError, connect

CHECK_MESSAGE_ID = 2  # after the StartTLS of a starttls backend, which uses 1


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    seconds: float
    detail: str  # "success", a result name, or why the connection failed


@dataclass(frozen=True)
class CheckRequest:
    kind: CheckType
    dn: str = ""
    password: str = ""

    def pdu(self) -> bytes:
        if self.kind is CheckType.rootdse:
            return ber.rootdse_search(CHECK_MESSAGE_ID)
        if self.kind is CheckType.bind:
            return ber.simple_bind(CHECK_MESSAGE_ID, self.dn, self.password)
        return ber.simple_bind(CHECK_MESSAGE_ID)


async def _exchange(backend: Backend, request: CheckRequest, context: ssl.SSLContext | None) -> str:
    transport, protocol = await connect(backend, PduProtocol, context)
    try:
        transport.write(request.pdu())
        while True:
            pdu = await protocol.read_pdu()
            env = ber.envelope(pdu)
            if env.message_id != CHECK_MESSAGE_ID:
                continue  # a notice of disconnection says why in its result
            if env.op in (ber.SEARCH_RESULT_ENTRY, ber.SEARCH_RESULT_REFERENCE):
                continue
            if env.op not in (ber.BIND_RESPONSE, ber.SEARCH_RESULT_DONE):
                return f"unexpected response 0x{env.op:02x}"
            return ber.result_name(ber.result_code(pdu, env))
    finally:
        if not transport.is_closing():
            transport.write(ber.unbind(CHECK_MESSAGE_ID + 1))
        transport.close()


async def check(
    backend: Backend, request: CheckRequest, context: ssl.SSLContext | None, timeout: float
) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            detail = await _exchange(backend, request, context)
    except TimeoutError:
        detail = f"no answer within {timeout:g}s"
    except (UpstreamError, ber.BerError) as exc:
        detail = str(exc)
    except Exception as exc:  # whatever it is, the backend did not pass
        detail = f"check failed: {exc!r}"
    return CheckResult(detail == "success", time.perf_counter() - started, detail)
