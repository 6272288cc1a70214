"""Following the backend's responses as they are relayed: only each PDU's head (message id, operation,
result code) is kept and read; the rest of it is counted past, so a large search result is written
through without being copied or parsed."""

from __future__ import annotations

from collections.abc import Callable

from matrix_stack.services.ldap_proxy import ber

# Told of each head: its message id, operation and result code (final responses only). Returns True
# when what follows is not LDAP any more (a passed-through StartTLS succeeded), to stop reading.
Seen = Callable[[int, int, int | None], bool]


class ResponseHeads:
    __slots__ = ("_head", "_skip")  # one per session, read on every response

    def __init__(self) -> None:
        self._head = bytearray()  # the start of the next PDU, until its head is whole
        self._skip = 0  # bytes of the current PDU still to come after its head

    def read(self, data: bytes, seen: Seen) -> None:
        """The next bytes of the stream: each head completed in them goes to `seen`, in order.
        Raises ber.BerError on bytes that are not LDAP."""
        if self._skip >= len(data):
            self._skip -= len(data)
            return
        head = self._head
        if not head and not self._skip:  # the usual read, one whole response: its head read in place
            peeked = ber.peek(data)
            if peeked is not None and peeked[0] == len(data):
                seen(peeked[1], peeked[2], peeked[3])
                return
        head += memoryview(data)[self._skip :]
        self._skip = 0
        while head:
            peeked = ber.peek(head)
            if peeked is None:
                return
            length, message_id, op, code = peeked
            if seen(message_id, op, code):
                self.clear()
                return
            if length <= len(head):
                del head[:length]
            else:
                self._skip = length - len(head)
                head.clear()

    def clear(self) -> None:
        """Start over: what follows is not the stream read so far (bytes only, or a new connection)."""
        self._head.clear()
        self._skip = 0

    @property
    def between_pdus(self) -> bool:
        """Nothing of a PDU is outstanding: the stream ends here cleanly."""
        return not self._head and not self._skip
