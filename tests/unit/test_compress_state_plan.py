"""The chunk planner over random state histories (hypothesis): whatever the shape Synapse left
(deltas, snapshots, forks), the planned structure resolves every group, by Synapse's rule (for each
key the row of the highest group on the chain), to the state it had, and no chain is longer than
the levels allow. The end-to-end tests check the same against PostgreSQL; this one explores shapes a
test homeserver does not make."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matrix_stack.services.compress_state import levels as chains
from matrix_stack.services.compress_state.plan import Step, plan_chunk
from matrix_stack.services.compress_state.statemap import StateMap

Key = tuple[str, str]


def resolve(group: int, edges: dict[int, int], rows: dict[int, StateMap]) -> StateMap:
    chain = [group]
    while chain[-1] in edges:
        chain.append(edges[chain[-1]])
    state: StateMap = {}
    for member in sorted(chain):  # ascending, so the highest group's row wins
        state.update(rows.get(member, {}))
    return state


def depth(group: int, edges: dict[int, int]) -> int:
    hops = 0
    while group in edges:
        group, hops = edges[group], hops + 1
    return hops


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[int], dict[int, int], dict[int, StateMap]]:
    count = draw(st.integers(min_value=1, max_value=400))
    edges: dict[int, int] = {}
    rows: dict[int, StateMap] = {}
    states: dict[int, StateMap] = {}
    for group in range(1, count + 1):
        kind = draw(st.sampled_from(["delta", "delta", "delta", "fork", "snapshot"]))
        base_group = group - 1 if kind == "delta" else draw(st.integers(min_value=0, max_value=group - 1))
        base = dict(states.get(base_group, {}))
        changes: StateMap = {}
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            key: Key = ("m.room.member", f"@u{draw(st.integers(min_value=0, max_value=30))}")
            changes[key] = f"${group}-{len(changes)}"
        state = {**base, **changes}
        states[group] = state
        if kind == "snapshot" or base_group == 0:
            rows[group] = dict(state)
        else:
            edges[group] = base_group
            rows[group] = changes
    return list(range(1, count + 1)), edges, rows


@settings(max_examples=150, deadline=None)
@given(
    histories(),
    st.sampled_from([[100, 50, 25], [3, 2], [5], [2, 2, 2]]),
    st.sampled_from([500, 60, 7, 1]),
    st.data(),
)
def test_planned_chains_keep_every_state_and_bound_every_walk(
    history: tuple[list[int], dict[int, int], dict[int, StateMap]],
    sizes: list[int],
    chunk: int,
    data: st.DataObject,
) -> None:
    groups, edges, rows = history
    # Groups Synapse is about to delete: left exactly as they are and never made a base.
    keep = set(data.draw(st.lists(st.sampled_from(groups), max_size=5)))
    before = {group: resolve(group, edges, rows) for group in groups}
    new_edges, new_rows = dict(edges), dict(rows)
    levels, dry_levels = chains.fresh(sizes), chains.fresh(sizes)
    for start in range(0, len(groups), chunk):  # chunk after chunk, the levels carried over
        part = groups[start : start + chunk]
        steps = plan_chunk(
            part, new_edges, new_rows, levels, lambda g: resolve(g, new_edges, new_rows), keep=keep
        )
        # A dry run plans each chunk over the tables as Synapse left them: the same plan.
        dry = plan_chunk(part, edges, rows, dry_levels, lambda g: resolve(g, edges, rows), keep=keep)
        assert dry == steps
        assert not keep & ({step.group for step in steps} | {step.prev for step in steps})
        for step in steps:
            new_edges.pop(step.group, None)
            if step.prev is not None:
                assert step.prev < step.group  # Synapse's resolution needs bases below
                new_edges[step.group] = step.prev
            new_rows[step.group] = step.rows
    for group in groups:
        assert resolve(group, new_edges, new_rows) == before[group]
        hops, walk = 0, group
        while walk in new_edges and walk not in keep:
            walk, hops = new_edges[walk], hops + 1
        if walk not in keep:  # a kept group keeps its old chain (Synapse deletes it soon)
            assert hops <= sum(sizes)


def apply(steps: list[Step], edges: dict[int, int], rows: dict[int, StateMap]) -> None:
    for step in steps:
        edges.pop(step.group, None)
        if step.prev is not None:
            edges[step.group] = step.prev
        rows[step.group] = step.rows


def saved(levels: list[chains.Level], sizes: list[int]) -> list[chains.Level]:
    """The levels as the next run loads them from the progress table."""
    loaded = chains.load(json.loads(json.dumps(chains.dump(levels))), sizes)
    assert loaded is not None
    return loaded


@settings(max_examples=150, deadline=None)
@given(
    histories(),
    st.sampled_from([[100, 50, 25], [3, 2], [5], [2, 2, 2]]),
    st.sampled_from([500, 60, 7]),
    st.data(),
)
def test_a_run_stopped_in_a_chunk_ends_as_one_that_was_not(
    history: tuple[list[int], dict[int, int], dict[int, StateMap]],
    sizes: list[int],
    chunk: int,
    data: st.DataObject,
) -> None:
    """Stopped after any rewrite, the next run plans the chunk again from its start with the bases
    Synapse had given the groups already rewritten: the same plan, so the same tables and chains as
    a run that went on; and a run that continues a room after a finished chunk plans as one that had
    carried its chains over."""
    groups, edges, rows = history
    whole_edges, whole_rows, whole_levels = dict(edges), dict(rows), chains.fresh(sizes)
    cut_edges, cut_rows, cut_levels = dict(edges), dict(rows), chains.fresh(sizes)
    for start in range(0, len(groups), chunk):
        part = groups[start : start + chunk]
        steps = plan_chunk(
            part, whole_edges, whole_rows, whole_levels, lambda g: resolve(g, whole_edges, whole_rows)
        )
        apply(steps, whole_edges, whole_rows)

        at_start = saved(cut_levels, sizes)  # saved with each rewrite, as the chunk started
        first = plan_chunk(part, cut_edges, cut_rows, cut_levels, lambda g: resolve(g, cut_edges, cut_rows))
        written = [step for step in first if step.changed]
        stop = data.draw(st.integers(min_value=0, max_value=len(written)))
        apply(written[:stop], cut_edges, cut_rows)
        bases = {step.group: step.old_prev for step in written[:stop]}
        cut_levels = at_start
        again = plan_chunk(part, cut_edges, cut_rows, cut_levels, lambda g: resolve(g, cut_edges, cut_rows),
                           bases=bases)  # fmt: skip
        assert not any(step.changed for step in again if step.group in bases)
        apply(again, cut_edges, cut_rows)
        assert (cut_edges, cut_rows) == (whole_edges, whole_rows)
        assert chains.dump(cut_levels) == chains.dump(whole_levels)
        cut_levels = saved(cut_levels, sizes)  # the chunk finished: the next one may be another run's


def forked_room(
    rounds: int, branches: int, steps: int
) -> tuple[list[int], dict[int, int], dict[int, StateMap]]:
    """As Synapse writes a room whose members change state concurrently: from a common group,
    `branches` branches of `steps` one-member deltas each, their groups interleaved by id (so the
    group before each one is on another branch), then a group resolving them, a delta on the first
    branch's last group; `rounds` times."""
    edges: dict[int, int] = {}
    rows: dict[int, StateMap] = {1: {("m.room.create", ""): "$create", ("m.room.power_levels", ""): "$pl"}}
    group, member = 1, 0
    for _ in range(rounds):
        fork = group
        tips = [fork] * branches
        added: list[StateMap] = [{} for _ in range(branches)]
        for _ in range(steps):
            for branch in range(branches):
                group, member = group + 1, member + 1
                change = {("m.room.member", f"@u{member}"): f"$join{member}"}
                edges[group], rows[group], tips[branch] = tips[branch], change, group
                added[branch].update(change)
        group += 1
        edges[group] = tips[0]
        rows[group] = {key: event for other in added[1:] for key, event in other.items()}
    return list(range(1, group + 1)), edges, rows


@pytest.mark.parametrize("sizes", [[200], [100, 50, 25], [10, 5, 4], [6, 6, 6]])
@pytest.mark.parametrize("branches", [2, 3])
def test_a_forked_room_keeps_deltas_where_the_group_before_is_on_another_branch(
    sizes: list[int], branches: int
) -> None:
    groups, edges, rows = forked_room(rounds=12, branches=branches, steps=4)
    before = {group: resolve(group, edges, rows) for group in groups}
    steps = plan_chunk(groups, edges, rows, chains.fresh(sizes), lambda g: resolve(g, edges, rows))
    new_edges = {step.group: step.prev for step in steps if step.prev is not None}
    new_rows = {step.group: step.rows for step in steps}
    for group in groups:
        assert resolve(group, new_edges, new_rows) == before[group]
        assert depth(group, new_edges) <= sum(sizes)
    # A group is stored whole only where the levels start anew, as in a room without forks: every
    # other one finds a base up the chain or in Synapse's own. (A leaf leaves the levels as they
    # were, so it is not linked here either.)
    levels, dumped = chains.fresh(sizes), chains.dump(chains.fresh(sizes))
    snapshots = []
    for step in steps:
        if step.levels != dumped and chains.link(levels, step.group) is None:
            snapshots.append(step.group)
        dumped = step.levels
    assert [step.group for step in steps if step.prev is None] == snapshots
    if sizes[0] >= len(groups):  # one chain: every group reaches its Synapse base, so no more rows
        assert sum(len(step.rows) for step in steps) <= sum(len(rows[group]) for group in groups)


def test_a_group_whose_head_is_on_another_branch_takes_the_nearest_usable_base() -> None:
    # 1 <- 2 (+a), 1 <- 3 (+b): 3's head is 2, which holds a key 3 lacks; 1 is up 2's chain.
    create: StateMap = {("m.room.create", ""): "$create"}
    edges = {2: 1, 3: 1, 4: 3}
    rows: dict[int, StateMap] = {1: create, 2: {("m.room.member", "@a"): "$a"}, 3: {("m.room.member", "@b"): "$b"},
                                 4: {("m.room.member", "@a"): "$a"}}  # fmt: skip
    steps = plan_chunk([1, 2, 3, 4], edges, rows, chains.fresh([100]), lambda g: {})
    assert [(step.group, step.prev, step.rows) for step in steps] == [
        (1, None, create),
        (2, 1, rows[2]),
        (3, 1, rows[3]),
        (4, 3, rows[4]),
    ]


def test_a_fork_just_after_a_chain_starts_is_a_leaf_on_synapses_base() -> None:
    # 1 <- 2 <- 3 fill a chain of 3; 4 (+b) and 5 (+a) fork from 3, then 6 resolves them. 4 starts
    # the next chain, a delta on 1; 5's head is 4, which holds b; up the chain, 1 would take three
    # rows; Synapse's base 3 takes one, but its walk (2) is too long for 5 in the chains, not for
    # the levels: 5 is left out of the chains, a delta on 3. 6 goes on from 4.
    m1, m2 = ("m.room.member", "@m1"), ("m.room.member", "@m2")
    a, b = ("m.room.member", "@a"), ("m.room.member", "@b")
    create: StateMap = {("m.room.create", ""): "$create"}
    edges = {2: 1, 3: 2, 4: 3, 5: 3, 6: 5}
    rows: dict[int, StateMap] = {
        1: create,
        2: {m1: "$m1"},
        3: {m2: "$m2"},
        4: {b: "$b"},
        5: {a: "$a"},
        6: {b: "$b"},
    }
    steps = plan_chunk([1, 2, 3, 4, 5, 6], edges, rows, chains.fresh([3, 5]), lambda g: {})
    assert [(step.group, step.prev, step.rows) for step in steps] == [
        (1, None, create),
        (2, 1, rows[2]),
        (3, 2, rows[3]),
        (4, 1, {m1: "$m1", m2: "$m2", b: "$b"}),
        (5, 3, rows[5]),
        (6, 4, rows[5]),
    ]
    assert steps[4].levels == steps[3].levels  # the leaf moved no chain
