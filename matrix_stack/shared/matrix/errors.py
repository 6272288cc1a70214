"""What the homeserver's answers mean to a sender: an error to keep or drop, or no answer at all."""

from __future__ import annotations

# Errors that an operator or time can fix: keep the message and try again later.
TRANSIENT_ERRCODES = frozenset({"M_LIMIT_EXCEEDED", "M_UNKNOWN_TOKEN", "M_CONSENT_NOT_GIVEN"})


class MatrixError(Exception):
    """The homeserver answered with an error."""

    def __init__(
        self, errcode: str | None, message: str, status: int | None, retry_after_ms: int | None = None
    ) -> None:
        super().__init__(f"{errcode or 'error'} ({status}): {message}")
        self.errcode = errcode
        self.message = message
        self.status = status
        self.retry_after_ms = retry_after_ms

    @property
    def transient(self) -> bool:
        """Whether trying again later can succeed without anything about the request changing."""
        return (
            self.status is None
            or self.status >= 500
            or self.status in (408, 429)
            or self.errcode in TRANSIENT_ERRCODES
        )


class HomeserverUnavailable(Exception):
    """The homeserver could not be reached at all."""
