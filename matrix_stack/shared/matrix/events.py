"""What a bridge hears in its rooms: events addressed to it, and who may act there.

The replica that holds the bot's device follows the rooms (`crypto/machine.py`), decrypts what is
encrypted and hands each room event from someone else to the service's listener, once per event
in the normal course; after a takeover the successor may hand over again the last events the
previous holder had already acted on, so listeners act idempotently (keyed by the event id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

# Events a listener gets (after decryption): reactions, messages (replies, commands), redactions.
HEARD_TYPES = frozenset({"m.reaction", "m.room.message", "m.room.redaction"})
# Room versions whose creators have unbounded power and are not listed in `users` (MSC4289).
_CREATORS_ABOVE_ALL = frozenset({"12"})


@dataclass(frozen=True)
class RoomEvent:
    room_id: str
    event_id: str
    sender: str
    type: str  # the clear type (an encrypted event's inner type)
    content: dict[str, Any]
    origin_server_ts: int
    redacts: str | None = None
    encrypted: bool = False

    @property
    def relation(self) -> dict[str, Any]:
        relates = self.content.get("m.relates_to")
        return relates if isinstance(relates, dict) else {}


class Listener(Protocol):
    async def heard(self, event: RoomEvent) -> None:
        """Act on one event; must not raise for the event's own faults (they are logged)."""
        ...

    async def idle(self) -> None:
        """After each /sync answer (at least every half minute): the following replica's own looks."""
        ...


@dataclass
class Powers:
    """A room's power levels and creators, from its state."""

    levels: dict[str, Any] | None = None
    create: dict[str, Any] = field(default_factory=dict)  # the create event's content and sender

    def of(self, user: str) -> float:
        creators = {self.create.get("sender")} | set(self.create.get("additional_creators") or ())
        if str(self.create.get("room_version", "1")) in _CREATORS_ABOVE_ALL and user in creators:
            return math.inf
        if self.levels is None:  # no power levels yet: the creator has 100, everyone else 0
            return 100 if user in creators else 0
        users = self.levels.get("users") or {}
        value = users.get(user, self.levels.get("users_default", 0))
        return float(value) if isinstance(value, int | float) else 0.0
