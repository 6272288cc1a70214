"""The PostgreSQL store through its interface, on a real PostgreSQL: room leases (one holder at a
time, a lapsed lease taken over with a new generation, the old holder's late writes refused) and the
privileges it needs."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest

from devstack.postgres import LocalPostgres
from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.store import NewDelivery

ROOM = "!leases:localhost"


def stores(postgres: LocalPostgres) -> tuple[PostgresStore, PostgresStore]:
    schema = f"leases_{uuid.uuid4().hex[:8]}"
    return tuple(  # type: ignore[return-value]
        PostgresStore(postgres.dsn(), schema, owner="@bot:localhost", holder=name, lease_seconds=2)
        for name in ("replica-a", "replica-b")
    )


async def test_one_holder_then_takeover_with_a_new_generation(postgres: LocalPostgres) -> None:
    a, b = stores(postgres)
    await a.open()
    await b.open()
    try:
        row = NewDelivery("d1", ROOM, "m.room.message", "{}", None, None, None, time.time())
        assert await a.insert([row], [], time.time()) == 1
        assert await b.insert([row], [], time.time()) == 0  # a known delivery id is not stored again
        held = await a.claim(ROOM)
        assert held is not None
        assert held.valid()
        assert not held.taken_over
        assert await b.claim(ROOM) is None  # one sender per room
        assert ROOM not in [room for room, _ in (await b.survey([])).heads]  # nor offered to b
        [pending] = await a.pending(ROOM, 10)

        await asyncio.sleep(2.5)  # a stops renewing (a dead replica): its lease lapses
        assert not held.valid()  # a itself stopped starting sends before the database let go
        assert ROOM in [room for room, _ in (await b.survey([])).heads]
        taken = await b.claim(ROOM)
        assert taken is not None
        assert taken.taken_over
        assert taken.generation == held.generation + 1

        late = a.finish(pending, held, "sent", "$late", None, time.time())
        assert await late is False  # the old holder's write is refused
        survey = await a.survey([held])
        assert survey.lost == [ROOM]
        assert (await b.status("d1")).state == "pending"  # type: ignore[union-attr]
        assert await b.finish(pending, taken, "sent", "$event", None, time.time()) is True
        assert (await a.status("d1")).event_id == "$event"  # type: ignore[union-attr]

        await b.release(taken, hand_over=False)
        again = await a.claim(ROOM)  # a released room is free at once
        assert again is not None
        assert not again.taken_over
    finally:
        await a.close()
        await b.close()


async def test_the_survey_renews_what_it_holds(postgres: LocalPostgres) -> None:
    a, b = stores(postgres)
    await a.open()
    await b.open()
    try:
        await a.insert([NewDelivery("d2", ROOM, "m.room.message", "{}", None, None, None, time.time())], [],
                       time.time())  # fmt: skip
        held = await a.claim(ROOM)
        assert held is not None
        for _ in range(4):  # 3 s in all, past the 2 s lease, renewed every 0.75 s
            await asyncio.sleep(0.75)
            assert (await a.survey([held])).lost == []
            assert await b.claim(ROOM) is None
        assert held.valid()
    finally:
        await a.close()
        await b.close()


async def test_a_schema_made_beforehand_needs_no_create_on_the_database(postgres: LocalPostgres) -> None:
    """What a DBA does for a locked-down role: the schema is made and owned by the role beforehand."""
    role, database = f"bridge_{uuid.uuid4().hex[:6]}", f"bridges_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'CREATE DATABASE "{database}"')
    with psycopg.connect(postgres.dsn(database), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA sentry_webhook AUTHORIZATION "{role}"')
    url = f"postgresql://{role}@127.0.0.1:{postgres.port}/{database}"
    store = PostgresStore(url, "sentry_webhook", owner="@bot:localhost")
    await store.open()
    try:
        row = NewDelivery("d3", ROOM, "m.room.message", "{}", None, None, None, time.time())
        assert await store.insert([row], [], time.time()) == 1
    finally:
        await store.close()
    elsewhere = PostgresStore(url, "other_schema", owner="@bot:localhost")
    with pytest.raises(NotDurable, match="permission denied for database"):
        await elsewhere.open()


async def test_replicas_racing_on_a_new_key_make_one_root(postgres: LocalPostgres) -> None:
    """Two replicas committing the first messages of one Sentry issue at once: one root, and every
    other message relates to it, whichever replica stored it."""
    a, b = stores(postgres)
    await a.open()
    await b.open()
    try:

        def row(n: int) -> NewDelivery:
            return NewDelivery(
                f"r{n}", ROOM, "m.room.message", "{}", None, None, None, time.time(), "issue:9", "thread"
            )

        await asyncio.gather(*((a if n % 2 else b).insert([row(n)], [], time.time()) for n in range(40)))
        rows = await a.pending(ROOM, 100)
        roots = [r.id for r in rows if r.rel_kind is None]
        assert len(roots) == 1
        assert {(r.rel_kind, r.rel_delivery) for r in rows if r.id != roots[0]} == {("thread", roots[0])}
    finally:
        await a.close()
        await b.close()
