"""The durable outbox against a real Synapse: outages, rate limits, dead letters, relations."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx
import pytest

from devstack.synapse import Account, LocalSynapse, register
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.client import MatrixClient
from matrix_stack.shared.outbox.engine import Outbox, Outgoing, Relation, Root
from tests.integration.conftest import PASSWORD, MakeStore

MakeClient = Callable[..., Awaitable[MatrixClient]]
MakeOutbox = Callable[..., Awaitable[Outbox]]
NewRoom = Callable[..., Awaitable[str]]


def bodies(events: list[dict[str, object]]) -> list[str]:
    return [e["content"]["body"] for e in events]  # type: ignore[index]


def sample(outbox: Outbox, name: str, **labels: str) -> float:
    assert outbox.metrics is not None
    metric = getattr(outbox.metrics, name)
    if name == "deliveries":
        labels["backend"] = outbox.store.backend
    return float((metric.labels(**labels) if labels else metric)._value.get())


async def test_delivers_in_order(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    ids = [await outbox.enqueue(room_id, content.message(f"m{i}")) for i in range(30)]
    events = await reader.wait_for_messages(room_id, 30)
    assert bodies(events) == [f"m{i}" for i in range(30)]
    final = await outbox.wait(ids[-1], timeout=10)
    assert final.state == "sent"
    assert final.event_id == events[-1]["event_id"]
    assert outbox.depth == 0


async def test_outage_loses_nothing(
    synapse: LocalSynapse,
    make_client: MakeClient,
    make_outbox: MakeOutbox,
    new_room: NewRoom,
    bot: Account,
    reader: Account,
) -> None:
    rooms = [await new_room(), await new_room()]
    client = await make_client(bot)
    for room_id in rooms:  # join before the outage; joining is tested elsewhere
        await client.join(room_id)
    outbox = await make_outbox(client)
    synapse.stop()
    try:
        for i in range(100):
            for r, room_id in enumerate(rooms):
                await outbox.enqueue(room_id, content.message(f"room{r}-{i:03d}"))
        await asyncio.sleep(1.5)  # let every room fail and back off at least once
        assert outbox.depth == 200
        assert sample(outbox, "deliveries", outcome="retry") >= 2
    finally:
        synapse.start()
    for r, room_id in enumerate(rooms):
        events = await reader.wait_for_messages(room_id, 100, timeout=60)
        assert bodies(events) == [f"room{r}-{i:03d}" for i in range(100)]
    await asyncio.sleep(1)
    for room_id in rooms:  # and nothing arrives twice later
        assert len(await reader.messages(room_id)) == 100
    assert sample(outbox, "deliveries", outcome="sent") == 200


async def test_rate_limited_sender_still_delivers_everything(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    make_client: MakeClient,
    make_outbox: MakeOutbox,
    new_room: NewRoom,
    reader: Account,
) -> None:
    slow = await register(synapse, http, "slowbot", PASSWORD)  # keeps the homeserver's low rc_message
    room_id = await new_room(invite=[slow.user_id])
    outbox = await make_outbox(await make_client(slow))
    await outbox.enqueue_many([Outgoing(room_id, content.message(f"r{i}")) for i in range(12)])
    events = await reader.wait_for_messages(room_id, 12, timeout=60)
    assert bodies(events) == [f"r{i}" for i in range(12)]
    assert sample(outbox, "deliveries", outcome="retry") > 0  # it really was rate limited
    assert sample(outbox, "deliveries", outcome="dead") == 0


async def test_permanent_failures_go_to_dead_letters(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    good = await new_room()
    not_invited = await reader.create_room(name="no bot here")
    outbox = await make_outbox(await make_client(bot))
    unknown = await outbox.enqueue("#no-such-room:localhost", content.message("lost?"))
    forbidden = await outbox.enqueue(not_invited, content.message("lost?"))
    too_large = await outbox.enqueue(good, content.message("x" * 70_000))
    after = await outbox.enqueue(good, content.message("still delivered"))
    assert (await outbox.wait(unknown, 10)).error.startswith("M_NOT_FOUND")  # type: ignore[union-attr]
    assert (await outbox.wait(forbidden, 10)).error.startswith("M_FORBIDDEN")  # type: ignore[union-attr]
    assert (await outbox.wait(too_large, 10)).error.startswith("M_TOO_LARGE")  # type: ignore[union-attr]
    assert (await outbox.wait(after, 10)).state == "sent"
    assert bodies(await reader.messages(good)) == ["still delivered"]
    assert sample(outbox, "deliveries", outcome="dead") == 3
    dead = await outbox.dead_letters()
    assert {letter.id for letter in dead} == {unknown, forbidden, too_large}
    assert all(letter.reason for letter in dead)


async def test_idempotent_delivery_ids(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    first = await outbox.enqueue(room_id, content.message("once"), delivery_id="sentry-request-1")
    again = await outbox.enqueue(room_id, content.message("once"), delivery_id="sentry-request-1")
    assert first == again == "sentry-request-1"
    await outbox.wait(first, 10)
    await asyncio.sleep(0.5)
    assert bodies(await reader.messages(room_id)) == ["once"]


async def test_relations_to_earlier_deliveries(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    firing = await outbox.enqueue(room_id, content.message("FIRING"))
    await outbox.enqueue(
        room_id, content.message("RESOLVED"), relation=Relation("replace", delivery_id=firing)
    )
    await outbox.enqueue(
        room_id, content.message("resolved at 12:00"), relation=Relation("thread", delivery_id=firing)
    )
    events = await reader.wait_for_messages(room_id, 3)
    root = events[0]["event_id"]
    assert events[1]["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": root}
    assert events[1]["content"]["m.new_content"]["body"] == "RESOLVED"
    assert events[2]["content"]["m.relates_to"]["event_id"] == root
    assert events[2]["content"]["m.relates_to"]["rel_type"] == "m.thread"


async def test_direct_send_returns_event_id(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    event_id = await outbox.send(room_id, content.message("sync"))
    [event] = await reader.wait_for_messages(room_id, 1)
    assert event["event_id"] == event_id
    with pytest.raises(Exception, match="M_NOT_FOUND"):
        await outbox.send("#missing:localhost", content.message("x"), timeout=10)


async def test_survives_restart_of_the_outbox(
    make_store: MakeStore,
    make_client: MakeClient,
    new_room: NewRoom,
    bot: Account,
    reader: Account,
    synapse: LocalSynapse,
) -> None:
    """Deliveries stored while the homeserver is down are sent by the next process that opens the store."""
    room_id = await new_room()
    client = await make_client(bot)
    await client.join(room_id)
    synapse.stop()
    try:
        first = Outbox(make_store("restart"), client, max_backoff=0.5)
        await first.open()
        first.start()
        ids = [await first.enqueue(room_id, content.message(f"kept {i}")) for i in range(5)]
        await first.stop()
    finally:
        synapse.start()
    second = Outbox(make_store("restart"), client, max_backoff=0.5)
    await second.open()
    assert second.depth == 5
    second.start()
    try:
        events = await reader.wait_for_messages(room_id, 5)
        assert bodies(events) == [f"kept {i}" for i in range(5)]
        assert (await second.status(ids[0])).state == "sent"  # type: ignore[union-attr]
    finally:
        await second.stop()


async def test_rooms_do_not_block_each_other(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    # A room whose head waits (unknown alias keeps failing permanently, then the next is sent).
    await outbox.enqueue("#nowhere:localhost", content.message("dead"))
    await outbox.enqueue(room_id, content.message("independent"))
    assert bodies(await reader.wait_for_messages(room_id, 1)) == ["independent"]
    state = await reader.api("GET", f"/rooms/{quote(room_id)}/joined_members")
    assert bot.user_id in state["joined"]


async def test_relation_roots_live_in_the_outbox(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account
) -> None:
    """A root is written with its message, survives a restart, takes a resolution, and is replaced
    only once resolved (a new firing)."""
    room_id = await new_room()
    client = await make_client(bot)
    outbox = await make_outbox(client, name="roots")
    first = await outbox.enqueue(room_id, content.message("firing"), root_key="group:a")
    again = await outbox.enqueue(room_id, content.message("firing again"), root_key="group:a")
    assert await outbox.root("group:a", room_id) == Root(first, False)  # the first live root stays
    await outbox.enqueue(room_id, content.message("resolved"), resolves_key="group:a")
    assert await outbox.root("group:a", room_id) == Root(first, True)
    await outbox.wait(again, timeout=30)
    await outbox.stop(drain_timeout=5)
    reopened = await make_outbox(client, name="roots")
    assert await reopened.root("group:a", room_id) == Root(first, True)  # kept across the restart
    refired = await reopened.enqueue(room_id, content.message("firing anew"), root_key="group:a")
    assert await reopened.root("group:a", room_id) == Root(refired, False)


async def test_concurrent_first_messages_of_a_key_make_one_root(
    make_client: MakeClient, make_outbox: MakeOutbox, new_room: NewRoom, bot: Account, reader: Account
) -> None:
    """Whether a message starts a key's thread or joins it is decided when it is committed."""
    room_id = await new_room()
    outbox = await make_outbox(await make_client(bot))
    await asyncio.gather(*(
        outbox.enqueue(room_id, content.message(f"event {i}"), root_key="issue:7", relate_to_root="thread")
        for i in range(12)
    ))  # fmt: skip
    # Resolved, the root still takes the key's later messages (a Sentry issue's events after it).
    await outbox.enqueue(room_id, content.message("resolved"), root_key="issue:7", relate_to_root="thread",
                         resolves_key="issue:7")  # fmt: skip
    await outbox.enqueue(room_id, content.message("regressed"), root_key="issue:7", relate_to_root="thread")
    events = await reader.wait_for_messages(room_id, 14)
    roots = [e for e in events if "m.relates_to" not in e["content"]]
    assert len(roots) == 1
    assert all(
        e["content"]["m.relates_to"]["event_id"] == roots[0]["event_id"] for e in events if e is not roots[0]
    )
