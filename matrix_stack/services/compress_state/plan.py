"""One chunk of a room, planned in memory: for each state group in id order, its full state (from
the rows as they are), the group it will be a delta from and the rows of that delta. Pure apart from
`resolve`, which answers the full state of a group outside the chunk."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from matrix_stack.services.compress_state import levels as chains
from matrix_stack.services.compress_state.statemap import StateMap, delta, digest


@dataclass(frozen=True)
class Step:
    group: int
    old_prev: int | None
    old: StateMap  # the group's rows as they are
    prev: int | None
    rows: StateMap  # its rows once rewritten
    # Of the full state, checked before and after the rewrite; None when nothing changes (the
    # digest sorts the whole state: made only for the groups that will be written).
    digest: tuple[int, str] | None
    levels: list[list[int | None]]  # the chains once this group is placed, saved with it

    @property
    def changed(self) -> bool:
        return self.digest is not None


def plan_chunk(
    groups: list[int],
    edges: Mapping[int, int],
    rows: Mapping[int, StateMap],
    levels: list[chains.Level],
    resolve: Callable[[int], StateMap],
    depth: Callable[[int], int],
    *,
    keep: Collection[int] = (),
) -> list[Step]:
    """Plan `groups` (ascending) onto `levels`, which move on. `resolve` and `depth` answer the full
    state and the number of deltas Synapse walks from a group outside the chunk (a chain head left by
    the chunk before). `keep`: groups left exactly as they are and kept out of the chains (pending
    deletion by Synapse).

    Each group's base is the head the levels give it when that is usable (its state holds no key the
    group lacks). When it is not (a fork: the group before by id is on another branch) or when
    another base makes a delta no larger, the base is the better of: the first usable group up the
    chain the head ends (as the Rust tool looks), and the group Synapse made it a delta from, when
    that one's walk is shorter than the head's (so no walk ends longer than the levels allow)."""
    children = Counter(edges[group] for group in groups if group in edges)
    held = Counter(member for level in levels for member in level.members)  # chains holding a group
    states: dict[int, StateMap] = {}
    designed: dict[int, int | None] = {}  # the base the levels gave each group
    budgets: dict[int, int] = {}  # the deltas the levels allow a group's walk
    depths: dict[int, int] = {}  # the deltas its walk will have

    def state_of(group: int) -> StateMap:
        if group not in states:
            states[group] = resolve(group)
        return states[group]

    def depth_of(group: int) -> int:
        if group not in depths:
            depths[group] = depth(group)
        return depths[group]

    def release(group: int | None) -> None:
        if group is not None and children[group] <= 0 and held[group] <= 0:
            states.pop(group, None)

    def place(group: int) -> tuple[int | None, list[int]]:
        """The head the levels give `group`, and the groups no chain holds any more."""
        before = [level.members for level in levels]
        prev = chains.link(levels, group)
        dropped: list[int] = []
        for old, level in zip(before, levels, strict=True):
            if level.members is not old:  # a new chain: the old one's groups are held one chain less
                for member in old:
                    held[member] -= 1
                dropped += old
            if level.members and level.members[-1] == group:
                held[group] += 1
        return prev, dropped

    def up_the_chain(prev: int, full: StateMap) -> tuple[int, StateMap] | None:
        """The first group from `prev` up the chain it ends whose state is a base for `full`."""
        walk: int | None = prev
        while walk is not None:
            rows_now = delta(state_of(walk), full)
            if rows_now is not None:
                return walk, rows_now
            walk = designed.get(walk)  # None past the chunk's first groups: a full snapshot then
        return None

    steps: list[Step] = []
    for group in groups:
        old_prev = edges.get(group)
        own = rows.get(group, {})
        full = dict(state_of(old_prev)) if old_prev is not None else {}
        full.update(own)
        if old_prev is not None:
            children[old_prev] -= 1
        states[group] = full
        if group in keep:
            release(old_prev)
            release(group)
            continue
        prev, dropped = place(group)
        designed[group] = prev
        budgets[group] = 0 if prev is None else (budgets[prev] if prev in budgets else depth_of(prev)) + 1
        rows_now: StateMap
        if prev is not None and prev == old_prev:
            # Same base: only the group's own rows can differ from it (the rest is the base's).
            base = state_of(prev)
            rows_now = {key: event for key, event in own.items() if base.get(key) != event}
        else:
            found = up_the_chain(prev, full) if prev is not None else None
            # Synapse's own base, when it was planned in this chunk (so neither kept nor gone) and
            # its walk is short enough: its delta is the group's rows, at most. Preferred on a tie,
            # as a group left as it is costs no write.
            if old_prev is not None and old_prev in budgets and depths[old_prev] < budgets[group]:
                base = state_of(old_prev)
                own_base = {key: event for key, event in own.items() if base.get(key) != event}
                if found is None or len(own_base) <= len(found[1]):
                    found = old_prev, own_base
            prev, rows_now = found if found is not None else (None, dict(full))  # none: stored whole
        depths[group] = 0 if prev is None else depth_of(prev) + 1
        changed = prev != old_prev or rows_now != own
        steps.append(Step(group, old_prev, own, prev, rows_now, digest(full) if changed else None,
                          chains.dump(levels)))  # fmt: skip
        for stale in dropped:
            release(stale)
        release(old_prev)
    return steps
