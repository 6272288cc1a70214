"""Following the backend's responses as they are relayed: only each PDU's head (message id, operation,
result code) is kept and read; the rest of it is counted past, so a large search result is written
through without being copied or parsed."""

from __future__ import annotations

from matrix_stack.services.ldap_proxy import ber

Head = tuple[int, int, int, int | None]  # ber.peek's: the PDU's length, message id, operation, code


class ResponseHeads:
    def __init__(self) -> None:
        self._head = bytearray()  # the start of the next PDU, until its head is whole
        self._skip = 0  # bytes of the current PDU still to come after its head

    def feed(self, data: bytes) -> bool:
        """Take the next bytes of the stream; False when they all belong to a PDU already read."""
        if self._skip >= len(data):
            self._skip -= len(data)
            return False
        self._head += memoryview(data)[self._skip :]
        self._skip = 0
        return True

    def next(self) -> Head | None:
        """The next whole head fed, its PDU then passed over; None until more is fed. Raises
        ber.BerError on bytes that are not LDAP."""
        head = self._head
        if not head:
            return None
        seen = ber.peek(head)
        if seen is None:
            return None
        length = seen[0]
        if length <= len(head):
            del head[:length]
        else:
            self._skip = length - len(head)
            head.clear()
        return seen

    def clear(self) -> None:
        """Start over: what follows is not the stream read so far (bytes only, or a new connection)."""
        self._head.clear()
        self._skip = 0

    @property
    def between_pdus(self) -> bool:
        """Nothing of a PDU is outstanding: the stream ends here cleanly."""
        return not self._head and not self._skip
