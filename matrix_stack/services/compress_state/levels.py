"""The chains a room's state groups are rewritten into (the idea of rust-synapse-compress-state's
`docs/algorithm.md`, re-expressed).

Level 0 links consecutive groups into chains of at most `sizes[0]` deltas; when a chain is full the
next group starts a new one, linked to the head of level 1, whose chains link every `sizes[0]`-th
group, and so on. Resolving any group then walks at most `sum(sizes)` deltas.

The chains also say how many deltas a walk may have: the head of level n was linked to the head
level n+1 had when level n's chain started (still its head: it moves only when level n's chain is
full), so the walk from the head of level n has at most `sum(length - 1)` over levels n and above.
A group may take as its base any group whose walk is shorter than that bound for the group; the
bound comes from the chains alone, so a dry run plans what a real run writes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Level:
    size: int
    length: int = 0
    head: int | None = None
    # The groups of the chain being built, oldest first, as far as this run has seen them (not saved:
    # a chain resumed from a previous run starts with its head). Each links to the one before it
    # and the first to the head of the level above, so these are where a base is looked for when
    # the head is not a usable one.
    members: list[int] = field(default_factory=list)


def fresh(sizes: list[int]) -> list[Level]:
    return [Level(size) for size in sizes]


def link(levels: list[Level], group: int) -> int | None:
    """The group `group` is to be a delta from (None: a full snapshot); moves the heads on."""
    for number, level in enumerate(levels):
        if level.length < level.size:
            prev = level.head
            level.head, level.length = group, level.length + 1
            level.members.append(group)
            if prev is None:
                # A first chain: its snapshot also starts the chains above, so the next level links
                # to it rather than starting with a second snapshot of its own (as the Rust tool's
                # level 1 does).
                for above in levels[number + 1 :]:
                    if above.head is None:
                        above.head, above.length, above.members = group, 1, [group]
            return prev
        # Full: a new chain starts here, linked one level up.
        level.head, level.length, level.members = group, 1, [group]
    return None


def _opening(levels: list[Level]) -> int | None:
    """The level the next group is linked on: the first with room (None: all full, a snapshot)."""
    return next((number for number, level in enumerate(levels) if level.length < level.size), None)


def budget(levels: list[Level]) -> int:
    """The deltas the walk from the head of the first of `levels` may have."""
    return sum(max(level.length - 1, 0) for level in levels)


def next_head(levels: list[Level]) -> int | None:
    """The group `link` will make the next group a delta from."""
    number = _opening(levels)
    return None if number is None else levels[number].head


def next_budget(levels: list[Level]) -> int:
    """The deltas `link` will allow the walk of the next group: one more than its head's."""
    number = _opening(levels)
    if number is None or levels[number].head is None:
        return 0  # a snapshot
    return budget(levels[number:]) + 1


def up_the_chain(levels: list[Level]) -> Iterator[tuple[int, int]]:
    """The groups up the chain the next group will be linked into, from the head `link` will give
    it, each with the deltas its walk may have."""
    number = _opening(levels)
    seen: set[int] = set()
    for above, level in enumerate(levels[number:] if number is not None else [], start=(number or 0) + 1):
        bound = budget(levels[above:])
        unseen = level.length - len(level.members)  # the chain's first groups, before this run
        for index in range(len(level.members) - 1, -1, -1):
            member = level.members[index]
            if member not in seen:
                seen.add(member)
                yield member, bound + unseen + index


def held(levels: list[Level]) -> set[int]:
    """Every group the chains hold: each must still exist for them to go on."""
    return {member for level in levels for member in level.members} | {
        level.head for level in levels if level.head is not None
    }


def dump(levels: list[Level]) -> list[list[Any]]:
    """Each level as [size, length, head, members]: the members too, so that a run continuing a room
    looks up the same chain as one that had gone on (a resumed chunk is planned as it was)."""
    return [[level.size, level.length, level.head, list(level.members)] for level in levels]


def load(saved: object, sizes: list[int]) -> list[Level] | None:
    """Saved levels, if they are for these sizes and well formed; else None (start fresh). Without
    members (the Rust tool's, and ours before 2026-12) a chain starts with its head."""
    if not isinstance(saved, list) or len(saved) != len(sizes):
        return None
    levels: list[Level] = []
    for item, size in zip(saved, sizes, strict=True):
        if not (isinstance(item, list) and len(item) in (3, 4) and item[0] == size):
            return None
        length, head = item[1], item[2]
        if not (isinstance(length, int) and 0 <= length <= size and (head is None or isinstance(head, int))):
            return None
        members = item[3] if len(item) == 4 else ([] if head is None else [head])
        if not (
            isinstance(members, list)
            and all(isinstance(member, int) for member in members)
            and len(members) <= length
            and (members[-1:] == [head] if head is not None else not members)
        ):
            return None
        levels.append(Level(size, length, head, members))
    return levels
