"""The one error a bridge answers 503 for: a message it could not make durable. Kept apart from the
outbox so the kit's app (which maps it to a response) does not import the Matrix client."""


class NotDurable(Exception):
    """The outbox could not commit (disk full, database unreadable...): nothing was accepted.

    The service kit answers 503 for it, so the caller retries; it is never a 200.
    """
