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
) -> list[Step]:
    """Plan `groups` (ascending) onto `levels`, which move on. `keep`: groups left exactly as they are
    and kept out of the chains (pending deletion by Synapse)."""
    children = Counter(edges[group] for group in groups if group in edges)
    states: dict[int, StateMap] = {}

    def state_of(group: int) -> StateMap:
        if group not in states:
            states[group] = resolve(group)
        return states[group]

    def release(group: int | None) -> None:
        if group is not None and children[group] <= 0 and group not in chains.heads(levels):
            states.pop(group, None)

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
        displaced = chains.heads(levels)
        prev = chains.link(levels, group)
        rows_now: StateMap | None
        if prev is not None and prev == old_prev:
            # Same base: only the group's own rows can differ from it (the rest is the base's).
            base = state_of(prev)
            rows_now = {key: event for key, event in own.items() if base.get(key) != event}
        else:
            rows_now = delta(state_of(prev) if prev is not None else None, full)
            if rows_now is None:  # the new base has an entry this state lacks: store it whole
                prev, rows_now = None, dict(full)
        changed = prev != old_prev or rows_now != own
        steps.append(Step(group, old_prev, own, prev, rows_now, digest(full) if changed else None,
                          chains.dump(levels)))  # fmt: skip
        for stale in displaced:
            release(stale)
        release(old_prev)
    return steps
