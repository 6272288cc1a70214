"""Which outbox delivery started the thread of a Sentry issue, kept durably beside the outbox.

Read on every request, written once per issue: served from memory, written through to SQLite.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path


class IssueThreads:
    """(issue id, room) -> delivery id of the thread root."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        # Losing the newest mapping in a power cut only means a new thread: no fsync per issue.
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS issue_threads (issue_id TEXT, room TEXT, delivery_id TEXT NOT NULL,"
            " PRIMARY KEY (issue_id, room))"
        )
        self._roots: dict[tuple[str, str], str] = {
            (issue, room): delivery
            for issue, room, delivery in self._connection.execute(
                "SELECT issue_id, room, delivery_id FROM issue_threads"
            )
        }
        self._lock = asyncio.Lock()

    def root(self, issue_id: str, room: str) -> str | None:
        return self._roots.get((issue_id, room))

    async def remember(self, issue_id: str, room: str, delivery_id: str) -> None:
        """Keep the first root only: a repeated alert does not start a new thread."""
        if (issue_id, room) in self._roots:
            return
        self._roots[(issue_id, room)] = delivery_id
        async with self._lock:
            await asyncio.to_thread(
                self._connection.execute,
                "INSERT OR IGNORE INTO issue_threads (issue_id, room, delivery_id) VALUES (?, ?, ?)",
                (issue_id, room, delivery_id),
            )
