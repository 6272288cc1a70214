"""Which outbox delivery started the thread of a Sentry issue, kept durably beside the outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path


class IssueThreads:
    """issue id -> (room, delivery id of the thread root). Small: one row per issue ever posted."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS issue_threads (issue_id TEXT, room TEXT, delivery_id TEXT NOT NULL,"
            " PRIMARY KEY (issue_id, room))"
        )
        self._lock = asyncio.Lock()

    async def root(self, issue_id: str, room: str) -> str | None:
        async with self._lock:
            row = await asyncio.to_thread(
                lambda: self._connection.execute(
                    "SELECT delivery_id FROM issue_threads WHERE issue_id = ? AND room = ?", (issue_id, room)
                ).fetchone()
            )
        return str(row[0]) if row else None

    async def remember(self, issue_id: str, room: str, delivery_id: str) -> None:
        """Keep the first root only: a repeated alert does not start a new thread."""
        async with self._lock:
            await asyncio.to_thread(
                self._connection.execute,
                "INSERT OR IGNORE INTO issue_threads (issue_id, room, delivery_id) VALUES (?, ?, ?)",
                (issue_id, room, delivery_id),
            )

    def close(self) -> None:
        self._connection.close()
