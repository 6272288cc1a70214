"""The sender of an outbox whose deliveries are never started: benchmarks of accepting only."""

from __future__ import annotations

from typing import Any


class NoSender:
    async def send(self, room: str, content: dict[str, Any], *, txn_id: str, event_type: str) -> str:
        raise AssertionError("this outbox's sender is never started")
