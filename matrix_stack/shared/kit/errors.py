"""The errors the kit turns into an exit code or an answer, raised from any layer without importing
the kit's app or server."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a type only: processes without HTTP (ldap-proxy's workers) need no starlette
    from starlette.responses import Response


class StartupError(Exception):
    """The component cannot start (wrong credentials, an unreachable homeserver, a port in use).
    One line for the operator."""


class NotDurable(Exception):
    """The outbox could not commit (disk full, database unreadable...): nothing was accepted.

    The service kit answers 503 for it, so the caller retries; it is never a 200.
    """


class WireError(Exception):
    """A handler's answer other than success (a 400, a 401...), raised from any depth of the handler;
    the kit's app answers with its response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response
