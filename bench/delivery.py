"""Notifications accepted and delivered: a closed loop of webhook requests, then the room watched until
the sender's messages for every accepted request are in it; and Synapse's own ceiling for messages
into one room (what bounds any bot that posts a message per alert)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bench.loadgen import Headers, Result, closed_loop
from devstack.synapse import Account

POLL = 0.25


@dataclass
class Delivery:
    accepted: Result
    messages: int  # the sender's new messages in the room
    seconds: float  # from the first request to the last message seen in the room

    @property
    def delivered_rate(self) -> float:
        """Notifications/s delivered: accepted ones whose messages are all in the room, over the time."""
        return self.accepted.statuses.get(200, 0) / self.seconds


@dataclass
class RoomCount:
    """The sender's messages in a room, counted by paging forward from where the last count ended
    (a look costs the new events only, not the room's history: it runs while the bots deliver)."""

    reader: Account
    room: str
    sender: str
    count: int = 0
    token: str | None = None

    async def update(self) -> int:
        path = f"/rooms/{quote(self.room, safe='')}/messages"
        while True:
            params: dict[str, Any] = {
                "dir": "f",
                "limit": 500,
                **({"from": self.token} if self.token else {}),
            }
            page = await self.reader.api("GET", path, **params)
            chunk = page.get("chunk", [])
            self.count += sum(
                1 for e in chunk if e.get("type") == "m.room.message" and e.get("sender") == self.sender
            )
            self.token = page.get("end") or self.token
            if not chunk or not page.get("end"):
                return self.count


async def delivered(
    url: str,
    body: bytes,
    *,
    requests: int,
    connections: int,
    reader: Account,
    room: str,
    sender: str,
    per_notification: int,
    headers: Headers | None = None,
    timeout: float = 120.0,
) -> Delivery:
    counter = RoomCount(reader, room, sender)
    before = await counter.update()
    start = time.monotonic()
    accepted = await closed_loop(url, body, requests=requests, connections=connections, headers=headers)
    expected = before + accepted.statuses.get(200, 0) * per_notification
    for _ in range(int(timeout / POLL)):  # a look every POLL seconds: the delivered time is that precise
        if (count := await counter.update()) >= expected:
            break
        await asyncio.sleep(POLL)
    return Delivery(accepted, count - before, time.monotonic() - start)


async def room_ceiling(account: Account, room: str, messages: int, connections: int) -> float:
    """Messages/s Synapse takes into one room from one unthrottled account, `connections` at a time."""
    queue = list(range(messages))
    url = f"{account.base_url}/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message"
    auth = {"Authorization": f"Bearer {account.access_token}"}

    async def worker() -> None:
        while queue:
            index = queue.pop()
            response = await account.http.put(
                f"{url}/{uuid.uuid4().hex}",
                json={"msgtype": "m.text", "body": f"ceiling {index}"},
                headers=auth,
            )
            response.raise_for_status()

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return messages / (time.monotonic() - start)
