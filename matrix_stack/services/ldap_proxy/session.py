"""One client connection and the backend connection it is relayed to.

Requests are framed PDU by PDU and decided on their operation tag: writes and extended operations
outside the allow-list are answered here when read-only, StartTLS is terminated here (or handed
through), binds are audited and may be refused by the failed-bind limit; everything else is forwarded
as it came. Responses are written through as they arrive and only their heads are read, to audit
bind results and follow a passed-through StartTLS.

A session is handed what it works with (settings, backends, bind limiter, metrics, certificate, the
registry that counts it): it knows nothing of the proxy that accepts it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from enum import Enum
from typing import Protocol, cast

from matrix_stack.services.ldap_proxy import ber
from matrix_stack.services.ldap_proxy.backends import BackendState, Pool
from matrix_stack.services.ldap_proxy.bind_limit import BindLimiter
from matrix_stack.services.ldap_proxy.config import STARTTLS_OID, LdapProxySettings
from matrix_stack.services.ldap_proxy.metrics import LdapMetrics
from matrix_stack.services.ldap_proxy.relay import UpstreamSide
from matrix_stack.services.ldap_proxy.responses import ResponseHeads
from matrix_stack.services.ldap_proxy.upstream import UpstreamError, connect
from matrix_stack.shared.kit.logs import HotLines

log = logging.getLogger("matrix_stack.ldap_proxy")
audit_log = HotLines(logging.getLogger("matrix_stack.ldap_proxy.audit"))  # a line per bind
PENDING_FACTOR = 4  # requests buffered while the backend connection opens: this many PDUs' worth


class State(Enum):
    """The connection's phase. The phases exclude each other, so they are one field: no two can be
    half-set, and each check below names the phase it is about."""

    OPEN = "open"  # requests read PDU by PDU and decided on; responses relayed, their heads read
    UPGRADING = "upgrading"  # StartTLS answered here: the handshake runs, nothing read, output held
    RAW = "raw"  # after a passed-through StartTLS: bytes relayed both ways, none read
    UNBINDING = "unbinding"  # an unbind came while a bind ran: nothing more read; ends once it is answered
    UNBOUND = "unbound"  # closing after an unbind it kept: the backend connection may be parked
    CLOSING = "closing"  # closing: nothing more read or sent; the backend connection is closed


# Plain names for the hot paths: looking up an Enum member on its class costs ~0.1 µs on Python 3.11.
OPEN, UPGRADING, RAW, UNBINDING, UNBOUND, CLOSING = (State.OPEN, State.UPGRADING, State.RAW, State.UNBINDING,
                                                     State.UNBOUND, State.CLOSING)  # fmt: skip


class Registry(Protocol):
    """Where the open sessions are counted (the proxy: its connection limit, drain and sweep)."""

    def admit(self, session: ClientConnection) -> bool:
        """Count a new session in; False when it is over the connection limit (it is counted all
        the same, and forgotten when it ends)."""

    def forget(self, session: ClientConnection) -> None:
        """Count an ended session out."""


class ClientConnection(asyncio.Protocol):
    """The client's end of a session, and the Relay its backend connection reports to."""

    def __init__(
        self,
        settings: LdapProxySettings,
        pool: Pool,
        limiter: BindLimiter,
        metrics: LdapMetrics,
        server_context: ssl.SSLContext | None,
        registry: Registry,
        listener: str,
        tls: bool,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.limiter = limiter
        self.metrics = metrics
        self.server_context = server_context  # for StartTLS terminated here
        self.registry = registry
        self.listener = listener
        self.state = OPEN
        # Apart from the state, because they hold across phases: the client's side is TLS (LDAPS, or
        # from a terminated StartTLS on); an abandoned request may be answered late, so the backend
        # connection is never reused; the client reads slower than the backend answers (flow control).
        self.tls = tls
        self.abandoned = False
        self.upstream_paused = False
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.buffer = bytearray()
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.upstream: asyncio.Transport | None = None
        self.upstream_protocol: UpstreamSide | None = None
        self.backend: BackendState | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.starttls_id: int | None = None  # a passed-through StartTLS awaiting the backend's answer
        self.binds: dict[int, tuple[str, float]] = {}
        self.replay: list[bytes] | None = None  # sent on a reused connection, not yet answered
        self.held_unbind: bytes | None = None  # an unbind held until the bind before it is answered
        self.in_flight: set[int] = set()  # message ids of requests awaiting their final response
        self._pauses: set[str] = set()  # why the client is not being read
        self._held: list[bytes] = []  # for the client while its TLS handshake runs
        self.bytes_up = self.bytes_down = 0  # counted here, added to the metrics by count_bytes
        self.last_activity = time.monotonic()
        self.waiting_since: float | None = None  # oldest unanswered request, for the response timeout
        self._upgrading_task: asyncio.Task[None] | None = None
        self._heads = ResponseHeads()
        self._counted = False  # in the registry: forgotten once, however the session ends

    @property
    def closing(self) -> bool:
        return self.state is CLOSING or self.state is UNBOUND

    # --- client events ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses
        self.peer = _address(transport.get_extra_info("peername"))
        admitted = self.registry.admit(self)
        self._counted = True
        if not admitted:
            self.refuse("connection_limit", 51, "too many connections to the LDAP proxy")  # busy
            return
        if not self.pool.any_up():
            self.refuse("no_backend", ber.UNAVAILABLE, "no LDAP backend is available")
        # The backend is chosen and connected when the first request is forwarded: connections that
        # never send one (ldap3's ServerPool opens and closes one per server to probe it) cost nothing
        # upstream and take no round-robin turn.

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.state is RAW:
            self._send_up(data)
            return
        buf = self.buffer
        limit = self.settings.max_pdu_bytes
        if not buf and self.state is OPEN and ber.whole_pdu(data) and len(data) <= limit:
            self._request(data)  # the usual read, one whole request: used as it came, not copied
            return
        buf += data
        while buf and self.state is OPEN:
            try:
                length = ber.pdu_length(buf)
            except ber.BerError as exc:
                self.fail("malformed", str(exc))
                return
            if length > limit:
                self.fail("too_large", f"a request of {length} bytes (the limit is {limit})")
                return
            if length < 0 or length > len(buf):
                return
            pdu = bytes(buf[:length])
            del buf[:length]
            self._request(pdu)

    def eof_received(self) -> bool | None:
        return None  # close: a half-open LDAP connection has no use

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        """The client is gone: park or close its backend connection, release what it held. Also
        called when a StartTLS handshake fails, where asyncio reports no connection_lost."""
        if self.state is not UNBOUND:  # kept: an unbound session's backend connection may be parked
            self.state = CLOSING
        if self.connecting is not None:
            self.connecting.cancel()
        if self.upstream is not None and not self._park():
            self.upstream.close()
        for dn, _ in self.binds.values():
            self.limiter.end(dn, None)
        self.binds.clear()
        if self._counted:
            self._counted = False
            self.registry.forget(self)

    def pause_writing(self) -> None:  # the client reads slower than it is answered
        self.upstream_paused = True
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.pause_reading()
        self.pause_client("client_full")  # nor does it get answers from the proxy itself

    def resume_writing(self) -> None:
        self.upstream_paused = False
        if self.upstream is not None and not self.upstream.is_closing():
            self.upstream.resume_reading()
        self.resume_client("client_full")

    def pause_client(self, reason: str) -> None:
        self._pauses.add(reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_client(self, reason: str) -> None:
        self._pauses.discard(reason)
        if self._pauses or self.state is UPGRADING:
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # --- requests -----------------------------------------------------------------------------------

    def _request(self, pdu: bytes) -> None:
        """One request, read in the OPEN state (after an unbind the state has left it: nothing more
        is read)."""
        try:
            env = ber.envelope(pdu)
            op = env.op
            if op not in ber.REQUESTS:
                raise ber.BerError(f"operation 0x{op:02x} is not a request")
            if env.message_id == 0:
                raise ber.BerError("message id 0 is the server's, for its notices")
            if self.binds and op == ber.UNBIND_REQUEST:  # sent right behind its bind, unanswered yet
                self._unbind_after_bind(pdu)
                return
            if self.binds and op != ber.ABANDON_REQUEST:  # RFC 4511 4.2.1: nothing while a bind runs
                raise ber.BerError("a request while a bind is in progress")
            if env.message_id in self.in_flight and op not in ber.NO_RESPONSE:
                raise ber.BerError(f"message id {env.message_id} is already in use")  # RFC 4511 4.1.1.1
            if op == ber.UNBIND_REQUEST and self.upstream is None and self.connecting is None:
                self.close()  # nothing was forwarded: nothing to end upstream
                return
            if op == ber.ABANDON_REQUEST:
                self.in_flight.discard(ber.abandoned_id(pdu, env))  # it may never be answered...
                self.abandoned = True  # ...or answered late: this connection is never reused
            if op == ber.BIND_REQUEST:
                self._bind(pdu, env)
            elif op == ber.EXTENDED_REQUEST:
                self._extended(pdu, env)
            elif op in ber.WRITES and self.settings.read_only:
                self._answer(
                    ber.result(env.message_id, ber.WRITES[op], ber.UNWILLING_TO_PERFORM,
                               "this LDAP proxy is read-only"),
                    "read_only", ber.OPERATION_NAMES[op],
                )  # fmt: skip
            elif op == ber.UNBIND_REQUEST and self._reusable():
                self._end(UNBOUND)  # not forwarded: the directory would close a reusable connection
            else:
                self._forward(pdu, op, env.message_id)
        except ber.BerError as exc:
            self.fail("malformed", str(exc))

    def _unbind_after_bind(self, pdu: bytes) -> None:
        """Hold an unbind until the bind before it is answered: the client gets the bind's answer, then
        the close. slapd does the same, mostly (a race in it sometimes closes first); forwarded at
        once, the unbind would meet that race, and a reusable connection could not be kept."""
        self.held_unbind = pdu
        self.state = UNBINDING  # nothing after the unbind is read
        self.pause_client("unbind")

    def _unbound_after_bind(self) -> None:
        """The held unbind, once the bind is answered: kept (the connection parked) when it can be,
        otherwise sent on and both sides closed, the bind's answer written first."""
        if self._reusable():
            self._end(UNBOUND)
            return
        if self.upstream is not None and self.held_unbind is not None:
            self._send_up(self.held_unbind)
        self.close()

    def _forward(self, pdu: bytes, op: int, message_id: int) -> None:
        if op not in ber.NO_RESPONSE:
            if not self.in_flight:
                self.waiting_since = time.monotonic()
            self.in_flight.add(message_id)
        self._send_up(pdu, op)

    def _send_up(self, data: bytes, op: int | None = None) -> None:
        self.bytes_up += len(data)
        if self.upstream is not None:
            self.upstream.write(data)
            return
        if self.connecting is None:
            candidates = self.pool.candidates()
            if not candidates:
                self.refuse("no_backend", ber.UNAVAILABLE, "no LDAP backend is available")
                return
            if op == ber.BIND_REQUEST and self._reuse(candidates[0], data):
                return
            self.connecting = asyncio.get_running_loop().create_task(self._connect(candidates))
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes > PENDING_FACTOR * self.settings.max_pdu_bytes:
            self.pause_client("pending")

    def _answer(self, response: bytes, reason: str, operation: str) -> None:
        """A response the proxy gives itself, instead of forwarding the request."""
        self.metrics.tallies.refused(reason)
        log.info("answered by the proxy", extra={"operation": operation, "reason": reason,
                                                 "client": _show(self.peer)})  # fmt: skip
        self._to_client(response)

    def _refuse_bind(self, env: ber.Envelope, dn: str, code: int, message: str, reason: str) -> None:
        """A bind the proxy answers itself: audited like any other, never forwarded."""
        self._audit(dn, code, None, 0.0)
        self._answer(ber.result(env.message_id, ber.BIND_RESPONSE, code, message), reason, "bind")

    def _bind(self, pdu: bytes, env: ber.Envelope) -> None:
        bind = ber.bind_request(pdu, env)
        if self.limiter.blocked(bind.name):  # its failures and binds in flight
            message = "too many failed binds for this DN; try again later"
            self._refuse_bind(env, bind.name, ber.UNWILLING_TO_PERFORM, message, "bind_limit")
            return
        if self.settings.require_tls and not self.tls and bind.has_password:
            message = "use StartTLS or LDAPS before binding with a password"
            self._refuse_bind(env, bind.name, ber.CONFIDENTIALITY_REQUIRED, message, "tls_required")
            return
        self.binds[env.message_id] = (bind.name, time.perf_counter())
        self.limiter.begin(bind.name)
        self._forward(pdu, ber.BIND_REQUEST, env.message_id)

    def _extended(self, pdu: bytes, env: ber.Envelope) -> None:
        oid = ber.extended_request_oid(pdu, env)
        if oid == STARTTLS_OID:
            mode = self.settings.starttls_mode
            if mode == "terminate":
                self._start_tls(env.message_id)
                return
            if mode == "passthrough" and (self.in_flight or self.buffer):
                self._to_client(ber.extended_response(env.message_id, ber.OPERATIONS_ERROR,
                                                      "operations are outstanding"))  # fmt: skip
                return
            if mode == "off":
                self._answer(
                    ber.extended_response(env.message_id, ber.UNAVAILABLE,
                                          "StartTLS is not offered: the proxy has no certificate"),
                    "starttls_off", "StartTLS",
                )  # fmt: skip
                return
            self.starttls_id = env.message_id  # passed through: relay bytes once the backend agrees
        elif self.settings.read_only and oid not in self.settings.allowed_extended_ops:
            self._answer(
                ber.extended_response(env.message_id, ber.UNWILLING_TO_PERFORM,
                                      f"extended operation {oid} is not allowed by this proxy"),
                "extended_operation", oid,
            )  # fmt: skip
            return
        self._forward(pdu, ber.EXTENDED_REQUEST, env.message_id)

    def _start_tls(self, message_id: int) -> None:
        if self.tls:
            reason = "TLS is already established"
        elif self.in_flight or self.buffer:
            reason = "operations are outstanding"
        else:
            assert self.transport is not None
            self.pause_client("tls")  # the next bytes are the TLS handshake, for start_tls
            self._to_client(ber.extended_response(message_id, ber.SUCCESS, "", STARTTLS_OID))
            self.state = UPGRADING  # after the answer, which goes out in plain LDAP
            self._upgrading_task = asyncio.get_running_loop().create_task(self._upgrade())
            return
        self._to_client(ber.extended_response(message_id, ber.OPERATIONS_ERROR, reason))

    async def _upgrade(self) -> None:
        assert self.transport is not None
        assert self.server_context is not None
        loop = asyncio.get_running_loop()
        try:
            upgraded = await loop.start_tls(
                self.transport, self, self.server_context, server_side=True,
                ssl_handshake_timeout=self.settings.connect_timeout,
            )  # fmt: skip
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.metrics.tallies.refused("tls_handshake")
            log.warning("connection closed", extra={"reason": "tls_handshake", "detail": f"StartTLS: {exc}",
                                                    "client": _show(self.peer)})  # fmt: skip
            self.transport.abort()
            self._finish()
            return
        if upgraded is None or self.state is not UPGRADING:  # closed while the handshake ran
            self._finish()
            return
        self.transport = upgraded
        self.tls = True
        self.state = OPEN
        self.last_activity = time.monotonic()
        held, self._held = self._held, []
        for data in held:
            self._to_client(data)
        self.resume_client("tls")

    # --- reusing backend connections -------------------------------------------------------------

    def _reuse(self, state: BackendState, first: bytes) -> bool:
        """Send a session's opening bind on an idle connection to the backend the policy chose."""
        if not self.settings.upstream_pool_size or state.config.proxy_protocol:
            return False  # a PROXY header names one client: that connection is that client's
        idle = state.take_idle(time.monotonic(), self.settings.upstream_pool_idle_seconds)
        if idle is None:
            return False
        transport, protocol = idle
        protocol.adopt(self)
        self.pool.opened(state)
        self.replay = [first]  # resent on a new connection if this one turns out to be closed
        self._attach(state, transport, protocol)
        transport.write(first)
        self.metrics.tallies.reused += 1
        return True

    def _reusable(self) -> bool:
        """A backend connection whose every operation is answered, in plain LDAP or the backend's own
        TLS (asked in the OPEN, UNBINDING and UNBOUND states, never RAW), with no bind in flight: the next
        session's opening bind resets it completely."""
        return (
            bool(self.settings.upstream_pool_size)
            and self.upstream is not None
            and self.backend is not None
            and not self.backend.config.proxy_protocol
            and self.starttls_id is None
            and not self.in_flight
            and not self.abandoned
            and not self.binds
            and not self.upstream_paused
            and not self.upstream.is_closing()
            and self._heads.between_pdus
        )

    def _park(self) -> bool:
        """Put this session's backend connection in the idle pool, if it ended cleanly."""
        upstream, backend, protocol = self.upstream, self.backend, self.upstream_protocol
        if not (self.state is UNBOUND and self._reusable()) or upstream is None or backend is None:
            return False
        if protocol is None or protocol.closed or upstream.is_closing():
            return False
        if not backend.park(upstream, protocol, time.monotonic(), self.settings.upstream_pool_size):
            return False
        protocol.park()
        self.pool.closed(backend)
        self.upstream = self.backend = self.upstream_protocol = None
        return True

    # --- the backend --------------------------------------------------------------------------------

    async def _connect(self, candidates: list[BackendState]) -> None:
        settings, pool = self.settings, self.pool
        for state in candidates:
            if state.full() and not state.drop_one_idle():
                continue
            pool.opened(state)  # reserved now, so a burst cannot pass the limit
            try:
                async with asyncio.timeout(settings.connect_timeout):
                    transport, protocol = await connect(
                        state.config, lambda: UpstreamSide(self), state.context,
                        client=self.peer, local=self._local(),
                    )  # fmt: skip
            except (UpstreamError, TimeoutError) as exc:
                detail = str(exc) or f"no connection within {settings.connect_timeout:g}s"
                log.warning("backend connect failed; trying the next", extra={"backend": state.name,
                                                                              "error": detail})  # fmt: skip
                pool.closed(state)
                pool.connect_failed(state)
                continue
            except BaseException:
                pool.closed(state)
                raise
            if self.closing:
                pool.closed(state)
                transport.close()
                return
            self._attach(state, transport, protocol)
            return
        self.refuse("no_backend", ber.UNAVAILABLE, "no LDAP backend answered")

    def _local(self) -> tuple[str, int] | None:
        """The address the client dialled (the PROXY header's destination)."""
        return _address(self.transport.get_extra_info("sockname")) if self.transport is not None else None

    def _attach(self, state: BackendState, transport: asyncio.Transport, protocol: UpstreamSide) -> None:
        self.backend = state
        self.upstream = transport
        self.upstream_protocol = protocol
        early = protocol.start_relaying()
        if self.pending:
            self.pending_bytes = 0
            self.resume_client("pending")  # before the write, which may pause it again
            transport.write(b"".join(self.pending))
            self.pending.clear()
        if early:
            self.from_upstream(early)
        if protocol.closed:
            self.upstream_lost()

    # --- Relay: what the backend connection reports -----------------------------------------------

    def from_upstream(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_activity = now
        self._to_client(data)
        if self.state is RAW:
            return
        if self.in_flight:
            self.waiting_since = now
        try:
            self._heads.read(data, self._response)
        except ber.BerError as exc:
            self.fail("backend_garbage", f"backend {self._backend_name()} sent garbage: {exc}")
            return
        if self.state is UNBINDING and not self.binds:  # after the read: the stream is between PDUs
            self._unbound_after_bind()

    def _response(self, message_id: int, op: int, code: int | None) -> bool:
        """A response's head; True when the rest is TLS, relayed unread (a passed-through StartTLS)."""
        if message_id:
            self.replay = None  # answered: this connection was alive
        if op not in ber.FINAL_RESPONSES or message_id == 0:
            return False
        self.in_flight.discard(message_id)
        if not self.in_flight:
            self.waiting_since = None
        assert code is not None
        if op == ber.BIND_RESPONSE:
            bind = self.binds.pop(message_id, None)
            if bind is not None:
                dn, started = bind
                self._audit(dn, code, self._backend_name(), time.perf_counter() - started)
                self.limiter.end(dn, code)
        elif op == ber.EXTENDED_RESPONSE and message_id == self.starttls_id:
            self.starttls_id = None
            if code == ber.SUCCESS and self.state is OPEN:
                self.state = RAW
                return True
        return False

    def upstream_lost(self) -> None:
        if self.backend is not None:
            self.pool.closed(self.backend)
            self.backend = None
        self.upstream = self.upstream_protocol = None
        if self.replay is not None and not self.closing:
            # A reused connection the directory had closed while it was idle: nothing was answered,
            # so the opening bind goes again, once, on a new connection.
            self.pending, self.replay = self.replay, None
            self.pending_bytes = sum(len(data) for data in self.pending)
            self._heads.clear()
            candidates = self.pool.candidates()
            if candidates:
                self.connecting = asyncio.get_running_loop().create_task(self._connect(candidates))
                return
        self.close()

    # --- endings ------------------------------------------------------------------------------------

    def _to_client(self, data: bytes) -> None:
        if self.state is UPGRADING:  # plaintext must not go into the TLS handshake
            self._held.append(data)
            return
        if self.transport is not None and not self.transport.is_closing():
            self.bytes_down += len(data)
            self.transport.write(data)

    def _audit(self, dn: str, code: int, backend: str | None, seconds: float) -> None:
        result = ber.result_name(code)
        self.metrics.tallies.bind(result)
        if self.settings.audit_binds:
            audit_log.info("bind", {"dn": dn, "result": result, "code": code, "backend": backend or "proxy",
                                    "ms": round(seconds * 1000, 2), "client": _show(self.peer)})  # fmt: skip

    def count_bytes(self) -> None:
        tallies = self.metrics.tallies
        tallies.to_backend += self.bytes_up
        tallies.to_client += self.bytes_down
        self.bytes_up = self.bytes_down = 0

    def expire(self, now: float) -> None:
        """The sweep's look: closed when the backend has not answered in time, or when idle too long."""
        if self.closing:
            return
        idle, answer = self.settings.idle_timeout, self.settings.response_timeout
        if self.waiting_since is not None and now - self.waiting_since > answer:
            if self.backend is not None:
                self.pool.connect_failed(self.backend)
            self.fail("response_timeout", f"no answer from the backend in {answer:g}s")
        elif now - self.last_activity > idle:
            self.fail("idle_timeout", f"idle for {idle:g}s")

    def _backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "-"

    def refuse(self, reason: str, code: int, message: str) -> None:
        """Tell the client why (a notice of disconnection) and close: it never waits on a dead end."""
        self.metrics.tallies.refused(reason)
        log.warning("connection refused", extra={"reason": reason, "client": _show(self.peer)})
        self._to_client(ber.notice_of_disconnection(code, message))
        self.close()

    def fail(self, reason: str, detail: str) -> None:
        """Bad input: one log line and this connection closed; nothing else is touched."""
        self.metrics.tallies.refused(reason)
        log.warning("connection closed", extra={"reason": reason, "detail": detail,
                                                "client": _show(self.peer)})  # fmt: skip
        self._to_client(ber.notice_of_disconnection(ber.PROTOCOL_ERROR, detail))
        self.close()

    def close(self) -> None:
        self._end(CLOSING)

    def _end(self, state: State) -> None:
        """Close the client's side; after a kept unbind (UNBOUND) the backend connection stays open,
        for _finish to park."""
        if self.state is CLOSING or self.state is UNBOUND:
            return
        self.state = state
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None and state is not UNBOUND:
            self.upstream.close()


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def _show(address: tuple[str, int] | None) -> str:
    return f"{address[0]}:{address[1]}" if address else "-"
