"""Rooms with a real state history, made through the client API of a real Synapse: members joining
and leaving, names, topics, power levels and custom state changing, so that Synapse writes its own
state groups (deltas, snapshots every 100 hops, forks where requests race). And what Synapse serves
of that state, to compare before and after the state tables are rewritten."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from devstack.synapse import Account, LocalSynapse, register


@dataclass
class History:
    rooms: list[str]
    owner: Account
    members: list[Account]
    # A sample of state events in each room, whose state Synapse is asked for at that event.
    samples: dict[str, list[str]] = field(default_factory=dict)


def _path(room: str) -> str:
    return f"/rooms/{quote(room, safe='')}"


async def _state(account: Account, room: str, kind: str, key: str, content: dict[str, Any]) -> str:
    path = f"{_path(room)}/state/{quote(kind, safe='')}/{quote(key, safe='')}"
    return str((await account.api("PUT", path, content))["event_id"])


def _owner_change(
    rng: random.Random, choice: float, step: int, seed: int, history: History, joined: set[int]
) -> tuple[str, str, dict[str, Any]]:
    """The owner's state change for `choice` (in [0.35, 1)): a topic, a name, power levels or a
    custom setting."""
    if choice < 0.5:
        return "m.room.topic", "", {"topic": f"topic {step}"}
    if choice < 0.6:
        return "m.room.name", "", {"name": f"room {seed} #{step}"}
    if choice < 0.7:
        # (room version 12: the creator holds power by creation, not in the users map)
        users = {history.members[i].user_id: rng.choice([0, 50]) for i in joined}
        return "m.room.power_levels", "", {"users": users, "users_default": 0}
    return "org.example.setting", f"key-{rng.randrange(40)}", {"value": step}


async def _churn(history: History, room: str, steps: int, seed: int, *, concurrent: bool = False) -> None:
    """`steps` state changes in `room`, one at a time; `concurrent`: in half the steps a member's
    join or leave and the owner's change are sent at once. Synapse creates a room's membership
    events and its other events under two different locks, so the two race: both are built on the
    same state, their groups fork from one group, and a later group resolves them."""
    rng = random.Random(seed)
    joined: set[int] = set()
    sample: list[str] = []

    async def membership(index: int) -> None:
        member = history.members[index]
        if index in joined:
            joined.discard(index)
            await member.api("POST", f"{_path(room)}/leave", {})
        else:
            joined.add(index)
            await member.join(room)

    for step in range(steps):
        choice = rng.random()
        if concurrent and choice < 0.5:
            index = rng.randrange(len(history.members))
            kind, key, content = _owner_change(rng, 0.35 + 0.65 * rng.random(), step, seed, history, joined)
            _, event = await asyncio.gather(
                membership(index), _state(history.owner, room, kind, key, content)
            )
        elif choice < 0.35:
            await membership(rng.randrange(len(history.members)))
            continue
        else:
            kind, key, content = _owner_change(rng, choice, step, seed, history, joined)
            event = await _state(history.owner, room, kind, key, content)
        if step % 7 == 0:
            sample.append(event)
    history.samples[room] = sample


async def build(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    *,
    rooms: int = 4,
    steps: int = 600,
    members: int = 12,
    concurrent_rooms: int = 0,
) -> History:
    """`rooms` rooms of `steps` state changes each, made concurrently (rooms in parallel); the last
    `concurrent_rooms` of them with concurrent changes in the room too (forked state)."""
    owner = await register(synapse, http, "state-owner", "owner-password", admin=True)
    accounts = list(
        await asyncio.gather(
            *(register(synapse, http, f"member{i}", f"member-password-{i}") for i in range(members))
        )
    )
    room_ids = [await owner.create_room(name=f"history {n}", preset="public_chat") for n in range(rooms)]
    history = History(room_ids, owner, accounts)
    await asyncio.gather(
        *(
            _churn(history, room, steps, seed, concurrent=seed >= rooms - concurrent_rooms)
            for seed, room in enumerate(room_ids)
        )
    )
    return history


async def served_state(history: History) -> dict[str, Any]:
    """What Synapse serves: each room's current state, and the state at each sampled event."""

    def canonical(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
        return sorted((e["type"], e["state_key"], e["event_id"]) for e in events)

    served: dict[str, Any] = {}
    for room in history.rooms:
        served[room] = {"now": canonical(await history.owner.api("GET", f"{_path(room)}/state"))}
        for event in history.samples.get(room, []):
            context = await history.owner.api(
                "GET", f"{_path(room)}/context/{quote(event, safe='')}", limit=0
            )
            served[room][event] = canonical(context["state"])
    return served
