"""The chunk planner over random state histories (hypothesis): whatever the shape Synapse left
(deltas, snapshots, forks), the planned structure resolves every group, by Synapse's rule (for each
key the row of the highest group on the chain), to the state it had, and no chain is longer than
the levels allow. The end-to-end tests check the same against PostgreSQL; this one explores shapes a
test homeserver does not make."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from matrix_stack.services.compress_state import levels as chains
from matrix_stack.services.compress_state.plan import plan_chunk
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
@given(histories(), st.sampled_from([[100, 50, 25], [3, 2], [5], [2, 2, 2]]), st.data())
def test_planned_chains_keep_every_state_and_bound_every_walk(
    history: tuple[list[int], dict[int, int], dict[int, StateMap]], sizes: list[int], data: st.DataObject
) -> None:
    groups, edges, rows = history
    # Groups Synapse is about to delete: left exactly as they are and never made a base.
    keep = set(data.draw(st.lists(st.sampled_from(groups), max_size=5)))
    before = {group: resolve(group, edges, rows) for group in groups}
    chunk = 500
    new_edges, new_rows = dict(edges), dict(rows)
    levels = chains.fresh(sizes)
    for start in range(0, len(groups), chunk):  # chunk after chunk, the levels carried over
        part = groups[start : start + chunk]
        steps = plan_chunk(
            part, new_edges, new_rows, levels, lambda g: resolve(g, new_edges, new_rows), keep=keep
        )
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
