"""The backend's end of a session, and the small protocol it relays into.

`UpstreamSide` is a PduProtocol while its connection is set up (PROXY header, StartTLS, TLS), then
hands every byte to its `Relay` (the client's side of the session) as it arrives, and its flow
control with it. It knows the relay only by this protocol, so neither it nor the idle pool that keeps
it between sessions depends on the session.
"""

from __future__ import annotations

from typing import Protocol

from matrix_stack.services.ldap_proxy.upstream import PduProtocol


class Relay(Protocol):
    """What the backend's end reports to: the session's client side."""

    def from_upstream(self, data: bytes) -> None:
        """Bytes from the backend, to pass on to the client."""

    def upstream_lost(self) -> None:
        """The backend connection closed."""

    def pause_client(self, reason: str) -> None:
        """Stop reading the client (the backend's send buffer is full); `reason` is undone by resume."""

    def resume_client(self, reason: str) -> None:
        """Read the client again, unless another reason still holds it."""


class UpstreamSide(PduProtocol):
    """A backend connection: set up as a PduProtocol, then a relay into its session; parked in the
    idle pool between sessions, where it has no relay."""

    def __init__(self, relay: Relay) -> None:
        super().__init__()
        self.relay: Relay | None = relay  # None while parked in the idle pool
        # Set up (False) or relaying (True): the relay is known from the start so the set-up's flow
        # control already reaches it, but its bytes go to the relay only once it is attached.
        self.relaying = False

    def data_received(self, data: bytes) -> None:
        if self.relaying and self.relay is not None:
            self.relay.from_upstream(data)
        elif self.relay is None:  # an idle connection has nothing to hear (a notice of disconnection)
            self._closed = True
            if self.transport is not None:
                self.transport.close()
        else:
            super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.relaying and self.relay is not None:
            self.relay.upstream_lost()

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.pause_client("backend_full")

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.resume_client("backend_full")

    def start_relaying(self) -> bytes:
        """Relay from now on; returns what arrived during the set-up, for the relay to take first."""
        self.relaying = True
        return self.take_buffer()

    def park(self) -> None:
        self.relay = None
        self.relaying = False

    def adopt(self, relay: Relay) -> None:
        self.relay = relay
