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
    *,
    keep: Collection[int] = (),
    bases: Mapping[int, int | None] | None = None,
) -> list[Step]:
    """Plan `groups` (ascending) onto `levels`, which move on. `keep`: groups left exactly as they are
    and kept out of the chains (pending deletion by Synapse). `bases`: the base Synapse had given each
    group an interrupted run of this chunk rewrote; choices are made on it, as they were then, so the
    chunk is planned as that run planned it (its rewrites come out unchanged, the rest as it would
    have written them).

    Each group's base is the head the levels give it when that is usable (its state holds no key the
    group lacks). When it is not (a fork: the group before by id is on another branch) or when
    another base makes a delta no larger, the base is the better of: the first usable group up the
    chain the head ends (as the Rust tool looks), and the group Synapse made it a delta from, when
    that one was planned in this chunk with a walk shorter than the levels allow the group.

    When the head is not usable and Synapse's base makes the smaller delta but has too long a walk
    for the chains (a fork just after a chain starts: the groups of its branch before it are at the
    end of the chain before), the group is left out of the chains, a delta on Synapse's base with a
    walk up to one short of the levels' bound: a leaf, which no later group takes as a base unless
    its walk is short enough for that group."""
    children = Counter(edges[group] for group in groups if group in edges)
    held = Counter(member for level in levels for member in level.members)  # chains holding a group
    states: dict[int, StateMap] = {}
    depths: dict[int, int] = {}  # the deltas each group planned here will have on its walk
    # A leaf's walk: one short of the levels' bound, so that a group Synapse is about to delete,
    # which stays a delta on its base, is within it too.
    leaf_limit = sum(level.size for level in levels) - 1

    def state_of(group: int) -> StateMap:
        if group not in states:
            states[group] = resolve(group)
        return states[group]

    def release(group: int | None) -> None:
        if group is not None and children[group] <= 0 and held[group] <= 0:
            states.pop(group, None)

    def place(group: int) -> list[int]:
        """Link `group` into the chains; the groups no chain holds any more."""
        before = [level.members for level in levels]
        chains.link(levels, group)
        dropped: list[int] = []
        for old, level in zip(before, levels, strict=True):
            if level.members is not old:  # a new chain: the old one's groups are held one chain less
                for member in old:
                    held[member] -= 1
                dropped += old
            if level.members and level.members[-1] == group:
                held[group] += 1
        return dropped

    def first_usable(full: StateMap) -> tuple[int, StateMap, int] | None:
        """The nearest group up the chain the next group goes into whose state is a base for
        `full`: it, the delta, and the deltas on its walk."""
        for member, bound in chains.up_the_chain(levels):
            rows_now = delta(state_of(member), full)
            if rows_now is not None:
                return member, rows_now, depths.get(member, bound)
        return None

    def rows_on(base: int, current: int | None, own: StateMap, full: StateMap) -> StateMap:
        """A group's rows as a delta on `base`, one of its own bases (Synapse's, or the one it has
        now: `current`, on which `own` is the delta)."""
        if base == current:  # only the group's own rows can differ from it
            state = state_of(base)
            return {key: event for key, event in own.items() if state.get(key) != event}
        rows = delta(state_of(base), full)  # a group rewritten since: the same, from its state
        assert rows is not None  # Synapse's base is a base of the group's state
        return rows

    steps: list[Step] = []
    for group in groups:
        old_prev = edges.get(group)
        own = rows.get(group, {})
        full = dict(state_of(old_prev)) if old_prev is not None else {}
        full.update(own)
        synapse_base = bases[group] if bases and group in bases else old_prev
        if old_prev is not None:
            children[old_prev] -= 1
        states[group] = full
        if group in keep:
            release(old_prev)
            release(group)
            continue
        head, budget = chains.next_head(levels), chains.next_budget(levels)
        found: tuple[int, StateMap, int] | None
        leaf = False
        if head is not None and head == synapse_base:
            found = head, rows_on(head, old_prev, own, full), depths.get(head, budget - 1)
        else:
            found = first_usable(full) if head is not None else None
            if synapse_base is not None and synapse_base in depths:  # planned here: neither kept nor gone
                # Synapse's base: its delta is the group's rows, at most. Preferred on a tie, as a
                # group left as it is costs no write.
                own_base = rows_on(synapse_base, old_prev, own, full)
                better = found is None or len(own_base) <= len(found[1])
                head_usable = found is not None and found[0] == head
                if better and depths[synapse_base] < budget:
                    found = synapse_base, own_base, depths[synapse_base]
                elif better and head is not None and not head_usable and depths[synapse_base] < leaf_limit:
                    found, leaf = (synapse_base, own_base, depths[synapse_base]), True
        dropped = [] if leaf else place(group)
        prev, rows_now = (None, dict(full)) if found is None else (found[0], found[1])  # none: stored whole
        depths[group] = 0 if found is None else found[2] + 1
        changed = prev != old_prev or rows_now != own
        steps.append(Step(group, old_prev, own, prev, rows_now, digest(full) if changed else None,
                          chains.dump(levels)))  # fmt: skip
        for stale in dropped:
            release(stale)
        release(old_prev)
        if leaf:
            release(group)
    return steps
