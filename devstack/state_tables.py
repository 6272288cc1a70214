"""Rooms written straight into Synapse's state tables the way Synapse writes them, for volume a real
homeserver cannot make in a test's time: a one-row delta per state change on the group before it,
a full snapshot once the chain reaches 100 deltas (`MAX_STATE_DELTA_HOPS`), and, in a forked room,
bursts where members change state concurrently: branches from one group whose groups interleave by
id, then the group of their resolved state, a delta on the branch it differs least from (Synapse's
`_make_state_cache_entry`). Members join (new keys) or change (replaced keys), so snapshots grow as
rooms do."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import psycopg

Key = tuple[str, str]
MAX_HOPS = 100


@dataclass
class _Room:
    room: str
    rng: random.Random
    next_group: int
    members: list[str] = field(default_factory=list)
    changes: int = 0
    groups: list[tuple[int, str, str]] = field(default_factory=list)
    edges: list[tuple[int, int]] = field(default_factory=list)
    rows: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    states: dict[int, dict[Key, str]] = field(default_factory=dict)
    hops: dict[int, int] = field(default_factory=dict)

    def change(self) -> tuple[Key, str]:
        """A random state change: a member joins, a member changes, or the room's name, topic or
        power levels do."""
        choice = self.rng.random()
        if choice < 0.55 or not self.members:
            self.members.append(f"@user{len(self.members)}:bench.example")
            key = ("m.room.member", self.members[-1])
        elif choice < 0.85:
            key = ("m.room.member", self.rng.choice(self.members))
        else:
            key = self.rng.choice([("m.room.topic", ""), ("m.room.name", ""), ("m.room.power_levels", "")])
        self.changes += 1
        return key, f"${self.room}-{self.changes}"

    def group(self, prev: int | None, state: dict[Key, str], delta: dict[Key, str]) -> int:
        """A new group of `state`: a delta on `prev`, or whole when `prev`'s chain is full."""
        group, self.next_group = self.next_group, self.next_group + 1
        self.groups.append((group, self.room, f"$event-{group}"))
        if prev is not None and self.hops[prev] < MAX_HOPS:
            self.edges.append((group, prev))
            self.rows.extend((group, self.room, kind, key, event) for (kind, key), event in delta.items())
            self.hops[group] = self.hops[prev] + 1
        else:
            self.rows.extend((group, self.room, kind, key, event) for (kind, key), event in state.items())
            self.hops[group] = 0
        self.states[group] = state
        return group

    def step(self, tip: int | None) -> int:
        state = dict(self.states[tip]) if tip is not None else {}
        key, event = self.change()
        state[key] = event
        return self.group(tip, state, {key: event})

    def burst(self, tip: int) -> int:
        """2 or 3 branches of 1 to 3 changes from `tip`, interleaved; the tip of their resolution."""
        branches = self.rng.choice([2, 2, 3])
        order = [branch for branch in range(branches) for _ in range(self.rng.randint(1, 3))]
        self.rng.shuffle(order)
        tips = [tip] * branches
        for branch in order:
            tips[branch] = self.step(tips[branch])
        resolved: dict[Key, str] = {}
        for branch in self.rng.sample(range(branches), branches):  # conflicts: a random branch wins
            resolved.update(self.states[tips[branch]])
        deltas = [{k: v for k, v in resolved.items() if self.states[t].get(k) != v} for t in tips]
        best = min(range(branches), key=lambda branch: len(deltas[branch]))
        if not deltas[best]:
            return tips[best]  # the resolved state is one branch's: Synapse reuses its group
        return self.group(tips[best], resolved, deltas[best])


def write_rooms(
    connection: psycopg.Connection[Any], names: list[str], groups: int, *, burst_rate: float, seed: int
) -> None:
    """Rooms `names` of about `groups` state groups each; `burst_rate`: the share of steps that
    are a burst of concurrent changes (0: a linear history)."""
    (start,) = connection.execute("SELECT coalesce(max(id), 0) + 1 FROM state_groups").fetchone()  # type: ignore[misc]
    next_group = int(start)
    with connection.cursor() as cursor:
        for number, name in enumerate(names):
            room = _Room(name, random.Random(seed * 1000 + number), next_group)
            create = {("m.room.create", ""): "$create", ("m.room.power_levels", ""): "$pl0",
                      ("m.room.join_rules", ""): "$jr", ("m.room.history_visibility", ""): "$hv"}  # fmt: skip
            tip = room.group(None, create, create)
            while len(room.groups) < groups:
                tip = room.burst(tip) if room.rng.random() < burst_rate else room.step(tip)
                room.states = {tip: room.states[tip]}  # only the tip is built on
            next_group = room.next_group
            with cursor.copy("COPY state_groups (id, room_id, event_id) FROM STDIN") as copy:
                for group_row in room.groups:
                    copy.write_row(group_row)
            with cursor.copy("COPY state_group_edges (state_group, prev_state_group) FROM STDIN") as copy:
                for edge in room.edges:
                    copy.write_row(edge)
            with cursor.copy(
                "COPY state_groups_state (state_group, room_id, type, state_key, event_id) FROM STDIN"
            ) as copy:
                for row in room.rows:
                    copy.write_row(row)
    connection.execute("SELECT setval('state_group_id_seq', %s)", (next_group,))
    connection.execute("ANALYZE")
