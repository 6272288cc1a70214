"""Which outbox delivery a later message must relate to (edit, reply, thread), by a caller's key:
a Sentry issue id, an Alertmanager group key or alert fingerprint. Kept durably beside the outbox.

Read on every request, written once per key: served from memory, written through to SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from matrix_stack.core.durability import NotDurable


class Roots:
    """(key, room) -> delivery id of the root message."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        # Losing the newest mapping in a power cut only means a new message instead of a relation.
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS roots"
            " (key TEXT, room TEXT, delivery_id TEXT NOT NULL, PRIMARY KEY (key, room))"
        )
        self._roots: dict[tuple[str, str], str] = {
            (key, room): delivery for key, room, delivery in self._connection.execute("SELECT * FROM roots")
        }
        self._lock = asyncio.Lock()

    def get(self, key: str, room: str) -> str | None:
        return self._roots.get((key, room))

    async def remember(self, key: str, room: str, delivery_id: str) -> None:
        """Keep the first root only: a repeated notification does not start a new one."""
        if (key, room) in self._roots:
            return
        self._roots[(key, room)] = delivery_id
        await self._write("INSERT OR IGNORE INTO roots (key, room, delivery_id) VALUES (?, ?, ?)",
                          (key, room, delivery_id))  # fmt: skip

    async def forget(self, key: str, room: str) -> None:
        if self._roots.pop((key, room), None) is not None:
            await self._write("DELETE FROM roots WHERE key = ? AND room = ?", (key, room))

    async def _write(self, statement: str, parameters: tuple[str, ...]) -> None:
        async with self._lock:
            try:
                await asyncio.to_thread(self._connection.execute, statement, parameters)
            except (sqlite3.Error, OSError) as exc:
                raise NotDurable(f"relation roots: {exc}") from exc
