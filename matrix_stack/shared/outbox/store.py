"""What the outbox keeps, and the interface of the stores that keep it (SQLite, PostgreSQL).

The delivery engine (`engine.py`) is the same on both; a store only commits rows, in tables that
`schema.py` describes once for both (with their numbered upgrades). A shared store (PostgreSQL) is
written by several replicas at once: they take a room's lease before sending to it, so that one
sender at a time keeps the room's order, and hear of each other's enqueues.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

State = Literal["pending", "sent", "dead"]
# The lease of the bot's device (its crypto state), beside the rooms' leases: no room id starts with ~.
DEVICE_LEASE = "~device"
# The columns of `Row` and `DeliveryStatus`, in order, in both stores.
ROW_COLUMNS = (
    "seq, id, room, event_type, content, rel_kind, rel_delivery, rel_event, attempts, next_attempt, created"
)
STATUS_COLUMNS = "id, room, state, attempts, event_id, error, created, finished"


@dataclass(frozen=True)
class NewDelivery:
    id: str
    room: str
    event_type: str
    content: str  # JSON
    rel_kind: str | None
    rel_delivery: str | None
    rel_event: str | None
    created: float
    # It becomes the root of this key in its room unless a live root exists. With root_rel: it
    # relates to the key's root if there is one, resolved or not, else it becomes the root (decided
    # in the transaction that stores it: replicas cannot race).
    root_key: str | None = None
    root_rel: str | None = None


@dataclass(frozen=True)
class Root:
    delivery_id: str
    resolved: bool


@dataclass(frozen=True)
class DeliveryStatus:
    id: str
    room: str
    state: State
    attempts: int
    event_id: str | None
    error: str | None
    created: float
    finished: float | None


@dataclass(frozen=True)
class DeadLetter:
    id: str
    room: str
    reason: str | None


@dataclass
class Row:
    """A pending delivery as the sender holds it."""

    seq: int
    id: str
    room: str
    event_type: str
    content: str
    rel_kind: str | None
    rel_delivery: str | None
    rel_event: str | None
    attempts: int
    next_attempt: float
    created: float


@dataclass
class Claim:
    """The right to send to one room. On SQLite it is always held; on PostgreSQL it is a lease that
    must be renewed, and `valid()` turns false a safety margin before the database would let it go."""

    room: str
    generation: int = 0
    deadline: float = float("inf")  # time.monotonic() after which we stop starting sends
    lost: bool = False
    taken_over: bool = False  # taken from a replica whose lease ran out (it died or lost the database)

    def valid(self) -> bool:
        return not self.lost and time.monotonic() < self.deadline


@dataclass(frozen=True)
class Survey:
    """The queue as a store sees it: when it opens, and (a shared store) every third of a lease."""

    depth: int
    # Rooms with pending deliveries that no live lease holds, and when their head is due.
    heads: list[tuple[str, float]]
    lost: list[str] = field(default_factory=list)  # our claims the database no longer honours


class OutboxStore(Protocol):
    backend: Literal["sqlite", "postgres"]
    shared: bool  # several replicas write and deliver at once
    description: str  # where it is, for messages (no secrets)

    async def open(self) -> Survey:
        """Create or upgrade the tables and look at the queue. Raises NotDurable, also for a database
        at a schema version newer than this release knows."""
        ...

    async def close(self) -> None: ...

    async def insert(
        self,
        rows: Sequence[NewDelivery],
        resolved: Sequence[tuple[str, str]],
        now: float,
    ) -> int:
        """Commit deliveries (known ids are skipped), the roots they start, their relations to live
        roots and resolutions, in one transaction; the number of deliveries added. Raises NotDurable."""
        ...

    async def root(self, key: str, room: str) -> Root | None: ...

    async def pending(self, room: str, limit: int) -> list[Row]: ...

    async def retry(self, row: Row, claim: Claim, reason: str) -> None: ...

    def finish(
        self, row: Row, claim: Claim, state: State, event_id: str | None, error: str | None, finished: float
    ) -> asyncio.Future[bool]:
        """Queue a delivery's end (committed with others); resolves to False when the claim was lost."""
        ...

    async def status(self, delivery_id: str) -> DeliveryStatus | None: ...

    async def dead_letters(self) -> list[DeadLetter]: ...

    async def writable(self) -> bool: ...

    async def prune(self, cutoff: float, resolved_before: float, created_before: float) -> None:
        """Drop old sent deliveries and old roots (a live root's delivery stays)."""
        ...

    # The bot's crypto state, one row per item (see matrix/crypto/state.py).
    async def crypto_load(self) -> dict[str, str]: ...

    async def crypto_save(self, claim: Claim, puts: Mapping[str, str], deletes: Collection[str]) -> None:
        """In one transaction, only while `claim` (the device lease) is held. Raises NotDurable."""
        ...

    # Sharing (no-ops on SQLite).
    async def claim(self, room: str) -> Claim | None:
        """Take the room, or None while another replica holds it."""
        ...

    async def release(self, claim: Claim, *, hand_over: bool) -> None:
        """Let the room go; `hand_over` tells the other replicas at once (we are stopping with work left)."""
        ...

    async def survey(self, claims: Sequence[Claim]) -> Survey:
        """Renew our claims and look at every replica's queue."""
        ...

    async def listen(self, heard: Callable[[list[str]], None]) -> None:
        """Call `heard` with the rooms other replicas enqueue to, until cancelled."""
        ...
