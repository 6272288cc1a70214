"""Several replicas of a bridge on one PostgreSQL outbox, against a real Synapse: requests spread
over them, one killed mid-delivery, the database or the homeserver gone for a while. Every message
accepted arrives once, in order per room, and relations hold whichever replica takes a request."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port, metric_sum
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, register
from tests.integration.conftest import PASSWORD
from tests.integration.test_alertmanager_receiver import DATA as AM_DATA
from tests.integration.test_alertmanager_receiver import auth, metio_config
from tests.integration.test_sentry_webhook import DATA as SENTRY_DATA
from tests.integration.test_sentry_webhook import SECRET, sign
from tests.integration.test_service_kit import run_notify

LEASE = "3"  # seconds: takeover within 4 s of a replica's last renewal
ISSUE = json.loads((SENTRY_DATA / "sentry_issue_created.json").read_text())
BODY = re.compile(r"msg (\d)-(\d{3})")


@pytest.fixture
def outbox_db() -> Iterator[LocalPostgres]:
    """A PostgreSQL of the test's own: some tests stop it."""
    server = LocalPostgres(free_port())
    server.start()
    yield server
    server.stop()


async def slow_bot(synapse: LocalSynapse, http: httpx.AsyncClient, admin: Account, rate: int) -> Account:
    """A fresh bot sending at most `rate` messages a second (0: no limit)."""
    bot = await register(synapse, http, f"replica-{uuid.uuid4().hex[:8]}", PASSWORD)
    response = await admin.http.post(
        f"{synapse.url}/_synapse/admin/v1/users/{quote(bot.user_id)}/override_ratelimit",
        json={"messages_per_second": rate, "burst_count": rate},
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    assert response.status_code == 200
    return bot


def sentry_replica(name: str, directory: Path, outbox_url: str, rooms: list[str]) -> LocalService:
    env = {
        "CLIENT_SECRET": SECRET,
        "PROJECT_ROOMS": json.dumps({f"p{i}": room for i, room in enumerate(rooms)}),
        "OUTBOX_URL": outbox_url,
        "ENCRYPTION_KEY": ENCRYPTION_KEY,
        "OUTBOX_LEASE_SECONDS": LEASE,
        "BACKOFF_MAX_SECONDS": "1",
        "LOG_JSON": "true",
    }
    return LocalService(name, "matrix_stack.services.sentry_webhook", "SENTRY_WEBHOOK_", free_port(), env,
                        directory / name)  # fmt: skip


def sentry_pair(
    synapse: LocalSynapse,
    bot: Account,
    url: str,
    rooms: list[str],
    started: list[LocalService],
    tmp_path: Path,
) -> tuple[LocalService, LocalService]:
    """Two sentry-webhook replicas on the outbox at `url`, started together, ready."""
    a, b = (sentry_replica(name, tmp_path, url, rooms) for name in ("a", "b"))
    started += [a, b]
    for service in (a, b):
        service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    for service in (a, b):
        service.wait_ready()
    return a, b


def issue(room: int, number: int, *, issue_id: str | None = None, action: str = "created") -> bytes:
    payload = json.loads(json.dumps(ISSUE))
    payload["action"] = action
    found = payload["data"]["issue"]
    found["id"] = issue_id or f"{room}{number:04d}{uuid.uuid4().hex[:6]}"
    found["title"] = f"msg {room}-{number:03d}"
    found["project"] = {"id": str(100 + room), "name": f"p{room}", "slug": f"p{room}", "platform": ""}
    if action == "resolved":
        payload["data"]["resolution_type"] = "now"
    return json.dumps(payload).encode()


async def post_sentry(http: httpx.AsyncClient, url: str, raw: bytes, request_id: str | None = None) -> int:
    headers = {"Content-Type": "application/json", "Sentry-Hook-Resource": "issue",
               "Request-ID": request_id or uuid.uuid4().hex, "Sentry-Hook-Signature": sign(raw)}  # fmt: skip
    response = await http.post(f"{url}/sentry", content=raw, headers=headers)
    return response.status_code


def numbers(events: list[dict[str, Any]], room: int) -> list[int]:
    found = [BODY.search(event["content"]["body"]) for event in events]
    assert all(match is not None and int(match[1]) == room for match in found), "a message in the wrong room"
    return [int(match[2]) for match in found if match is not None]


async def metric(service: LocalService, name: str) -> float:
    return await asyncio.to_thread(metric_sum, f"{service.url}/metrics", name)


async def devices(synapse: LocalSynapse, admin: Account, user_id: str) -> int:
    response = await admin.http.get(
        f"{synapse.url}/_synapse/admin/v2/users/{quote(user_id)}/devices",
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    return int(response.json()["total"])


@pytest.fixture
async def started() -> AsyncIterator[list[LocalService]]:
    services: list[LocalService] = []
    yield services
    for service in services:
        service.stop()


async def test_two_sentry_replicas_one_killed_mid_delivery(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    reader: Account,
    postgres: LocalPostgres,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    # Not rate limited: a room waiting out a 429 is released, and the kill would find nothing to take over.
    bot = await slow_bot(synapse, http, admin, 0)
    rooms = [await reader.create_room(name=f"replicas {i}", invite=[bot.user_id]) for i in range(5)]
    url = postgres.create_database(f"sentry_{uuid.uuid4().hex[:8]}")
    before = await devices(synapse, admin, bot.user_id)  # registering made one
    a, b = sentry_pair(synapse, bot, url, rooms, started, tmp_path)  # both log in at once
    assert await devices(synapse, admin, bot.user_id) == before + 1  # one login, shared through the database

    async def room_burst(room: int) -> None:
        for number in range(100):  # alternating replicas, each message after the last was accepted
            target = (a, b)[number % 2]
            assert await post_sentry(http, target.url, issue(room, number)) == 200

    await asyncio.gather(*(room_burst(room) for room in range(5)))
    for _ in range(400):
        if sum([len(await reader.messages(room)) for room in rooms]) >= 100:
            break
        await asyncio.sleep(0.05)
    # The replica sending to rooms is killed (the first to claim a busy room keeps it until drained).
    if await metric(a, "matrix_stack_outbox_room_leases") < await metric(
        b, "matrix_stack_outbox_room_leases"
    ):
        a, b = b, a
    assert await metric(a, "matrix_stack_outbox_room_leases") >= 1
    assert a.process is not None
    a.process.send_signal(signal.SIGKILL)
    a.process.wait()
    delivered = sum([len(await reader.messages(room)) for room in rooms])
    assert 100 <= delivered < 450, "the kill must land mid-delivery"

    for index, room in enumerate(rooms):
        events = await reader.wait_for_messages(room, 100, timeout=120)
        await asyncio.sleep(0.5)
        events = await reader.messages(room)
        assert numbers(events, index) == list(range(100)), f"room {index}: lost, doubled or out of order"
    assert await metric(b, "matrix_stack_outbox_lease_takeovers_total") >= 1
    assert await devices(synapse, admin, bot.user_id) == before + 1

    # One Sentry issue, its events through either replica: all in the first message's thread.
    a.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    a.wait_ready()
    issue_id = uuid.uuid4().hex[:10]
    assert await post_sentry(http, a.url, issue(2, 900, issue_id=issue_id)) == 200
    for number, target in ((901, b), (902, a), (903, b)):
        assert (
            await post_sentry(http, target.url, issue(2, number, issue_id=issue_id, action="resolved")) == 200
        )
    events = (await reader.wait_for_messages(rooms[2], 104, timeout=60))[100:]
    root = events[0]["event_id"]
    assert "m.relates_to" not in events[0]["content"]
    for event in events[1:]:
        assert event["content"]["m.relates_to"]["rel_type"] == "m.thread"
        assert event["content"]["m.relates_to"]["event_id"] == root


async def test_database_outage_answers_503_and_loses_nothing(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    reader: Account,
    outbox_db: LocalPostgres,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await slow_bot(synapse, http, admin, 200)
    rooms = [await reader.create_room(name="pg outage", invite=[bot.user_id])]
    url = outbox_db.dsn()
    a, b = sentry_pair(synapse, bot, url, rooms, started, tmp_path)
    accepted: list[int] = []
    for number in range(30):
        assert await post_sentry(http, (a, b)[number % 2].url, issue(0, number)) == 200
        accepted.append(number)
    outbox_db.pause()
    try:
        during = await asyncio.gather(
            *(
                post_sentry(http, (a, b)[n % 2].url, issue(0, n), request_id=f"outage-{n}")
                for n in range(30, 50)
            )
        )
        assert set(during) == {503}, f"while PostgreSQL is down every request must get 503: {during}"
        assert (await http.get(f"{a.url}/readyz")).status_code == 503
    finally:
        outbox_db.start()
    for number in range(30, 50):  # the sender retries what was refused, with the same Request-ID
        status = 503
        for _ in range(60):
            status = await post_sentry(
                http, (a, b)[number % 2].url, issue(0, number), request_id=f"outage-{number}"
            )
            if status == 200:
                break
            await asyncio.sleep(0.5)
        assert status == 200
        accepted.append(number)
    await reader.wait_for_messages(rooms[0], len(accepted), timeout=120)
    await asyncio.sleep(1)
    assert numbers(await reader.messages(rooms[0]), 0) == accepted


async def test_homeserver_outage_with_two_replicas(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    reader: Account,
    postgres: LocalPostgres,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await slow_bot(synapse, http, admin, 200)
    rooms = [await reader.create_room(name=f"hs outage {i}", invite=[bot.user_id]) for i in range(2)]
    url = postgres.create_database(f"hs_{uuid.uuid4().hex[:8]}")
    a, b = sentry_pair(synapse, bot, url, rooms, started, tmp_path)
    synapse.stop()
    try:
        for number in range(40):
            for room in range(2):
                assert await post_sentry(http, (a, b)[number % 2].url, issue(room, number)) == 200
        await asyncio.sleep(3)  # the senders back off against a dead homeserver
    finally:
        synapse.start()
    for index, room in enumerate(rooms):
        await reader.wait_for_messages(room, 40, timeout=120)
        await asyncio.sleep(1)
        assert numbers(await reader.messages(room), index) == list(range(40))


async def test_alertmanager_resolve_through_the_other_replica_edits(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    bot: Account,
    reader: Account,
    postgres: LocalPostgres,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    room = await reader.create_room(name="am replicas", invite=[bot.user_id])
    url = postgres.create_database(f"am_{uuid.uuid4().hex[:8]}")
    replicas = []
    for name in ("a", "b"):
        port = free_port()
        config = metio_config(
            bot, synapse, port, {"ops": room}, {"message-mode": "group", "on-resolve": "edit"}
        )
        path = tmp_path / f"{name}.yaml"
        path.write_text(config)
        env = {"CONFIG_PATH": str(path), "OUTBOX_URL": url, "OUTBOX_LEASE_SECONDS": LEASE,
               "ENCRYPTION_KEY": ENCRYPTION_KEY}  # fmt: skip
        replica = LocalService(f"am-{name}", "matrix_stack.services.alertmanager_receiver",
                               "ALERTMANAGER_RECEIVER_", port, env, tmp_path / name)  # fmt: skip
        replicas.append(replica)
    started += replicas
    os.environ["AM_TEST_TOKEN"] = bot.access_token
    for replica in replicas:
        replica.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        replica.wait_ready()
    firing = json.loads((AM_DATA / "am_docsrs_webhook_types_sample_v4_firing.json").read_text())
    firing = {**firing, "status": "firing", "alerts": [{**x, "status": "firing"} for x in firing["alerts"]]}
    resolved = {
        **firing,
        "status": "resolved",
        "alerts": [{**x, "status": "resolved"} for x in firing["alerts"]],
    }
    a, b = (f"http://127.0.0.1:{yaml.safe_load((tmp_path / f'{n}.yaml').read_text())['http']['port']}/alerts/ops"
            for n in ("a", "b"))  # fmt: skip
    assert (await http.post(a, json=firing, headers=auth())).status_code == 200
    [first] = await reader.wait_for_messages(room, 1, timeout=60)
    assert (await http.post(b, json=resolved, headers=auth())).status_code == 200
    events = await reader.wait_for_messages(room, 2, timeout=60)
    assert events[1]["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": first["event_id"]}


def test_a_bad_outbox_setting_is_one_line_and_exit_2() -> None:
    base = {"NOTIFY_HOMESERVER": "http://x", "NOTIFY_USER_ID": "@bot:x", "NOTIFY_TOKEN": "t" * 24,
            "NOTIFY_ACCESS_TOKEN": "x"}  # fmt: skip
    secret = "s3cret-pass@zebra"
    result = run_notify({**base, "NOTIFY_OUTBOX_URL": f"postgresql://bot:{secret}@db.example.org/outbox"})
    assert result.returncode == 2
    assert result.stderr.startswith("config error: NOTIFY_OUTBOX_URL: the connection string is malformed")
    assert "zebra" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    result = run_notify(
        {**base, "NOTIFY_OUTBOX_URL": "postgresql://db/x", "NOTIFY_OUTBOX_SCHEMA": "Bad-Name"}
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: NOTIFY_OUTBOX_SCHEMA: String should match pattern")


async def test_an_unreachable_outbox_or_another_bots_is_refused_in_one_line(
    synapse: LocalSynapse, bot: Account, http: httpx.AsyncClient, postgres: LocalPostgres
) -> None:
    base = {"NOTIFY_HOMESERVER": synapse.url, "NOTIFY_TOKEN": "t" * 24, "NOTIFY_LOG_JSON": "false",
            "NOTIFY_ENCRYPTION_KEY": ENCRYPTION_KEY}  # fmt: skip
    secret = "not-the-password-123"
    result = run_notify({**base, "NOTIFY_USER_ID": bot.user_id, "NOTIFY_ACCESS_TOKEN": bot.access_token,
                         "NOTIFY_OUTBOX_URL": f"postgresql://nobody:{secret}@127.0.0.1:{free_port()}/x"})  # fmt: skip
    assert result.returncode == 1
    assert "cannot open the outbox at postgresql 127.0.0.1/x schema notify" in result.stderr
    assert secret not in result.stderr + result.stdout
    url = postgres.create_database(f"owner_{uuid.uuid4().hex[:8]}")
    first = await register(synapse, http, f"owner-{uuid.uuid4().hex[:6]}", PASSWORD)
    other = await register(synapse, http, f"other-{uuid.uuid4().hex[:6]}", PASSWORD)
    port = free_port()
    service = LocalService("owner", "matrix_stack.services.notify", "NOTIFY_", port,
                           {"TOKEN": "t" * 24, "OUTBOX_URL": url, "ENCRYPTION_KEY": ENCRYPTION_KEY}, Path(postgres.directory) / "owner")  # fmt: skip
    service.start(synapse.url, first.user_id, PASSWORD, Path(postgres.directory) / "logs")
    try:
        service.wait_ready()
    finally:
        service.stop()
    result = run_notify({**base, "NOTIFY_USER_ID": other.user_id, "NOTIFY_ACCESS_TOKEN": other.access_token,
                         "NOTIFY_OUTBOX_URL": url})  # fmt: skip
    assert result.returncode == 1
    assert f"is the outbox of {first.user_id}, not {other.user_id}" in result.stderr
