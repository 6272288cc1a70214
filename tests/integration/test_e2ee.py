"""End-to-end encryption, proven by Element's own crypto: every bridge posts into encrypted rooms
of a real Synapse and an independent reader (matrix-js-sdk with its Rust crypto) decrypts it all."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml

from devstack.e2ee_devices import MemberDevice, login_device
from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port, json_log_lines, metric_sum
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, login, register
from matrix_stack.shared.matrix.crypto.machine import UNENCRYPTED_RECHECK
from tests.integration.conftest import PASSWORD
from tests.integration.e2ee_reader import Reader
from tests.integration.test_sentry_webhook import DATA as SENTRY_DATA
from tests.integration.test_sentry_webhook import SECRET, sign

MakeReader = Callable[..., Awaitable[Reader]]
NOTIFY_TOKEN = "e2ee-notify-token-0123456789"
HOOK = "e2ee-hook-0123456789abcdefgh"
BASIC = ("alertmanager", "e2ee-basic-password")


async def new_bot(synapse: LocalSynapse, http: httpx.AsyncClient, admin: Account, rate: int = 0) -> Account:
    """A bot account of the test's own (its cross-signing identity is the test's), sending at most
    `rate` messages a second (0: no limit)."""
    bot = await register(synapse, http, f"e2ebot-{uuid.uuid4().hex[:8]}", PASSWORD)
    await admin.http.post(
        f"{synapse.url}/_synapse/admin/v1/users/{quote(bot.user_id)}/override_ratelimit",
        json={"messages_per_second": rate, "burst_count": rate},
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    return bot


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[list[LocalService]]:
    services: list[LocalService] = []
    yield services
    for service in services:
        service.stop()


def notify(name: str, directory: Path, room: str, **env: str) -> LocalService:
    base = {"TOKEN": NOTIFY_TOKEN, "DEFAULT_ROOM": room, "LOG_JSON": "true", "BACKOFF_MAX_SECONDS": "2"}
    return LocalService.of("notify", free_port(), {**base, **env}, directory / name)


async def post_notify(
    http: httpx.AsyncClient, service: LocalService, text: str, room: str | None = None
) -> str:
    path = f"/notify/{quote(room, safe='')}" if room else "/notify"
    response = await http.post(
        f"{service.url}{path}", json={"text": text}, headers={"Authorization": f"Bearer {NOTIFY_TOKEN}"}
    )
    assert response.status_code in (200, 202), response.text
    return str(response.json()["delivery_id"])


async def raw_events(account: Account, room: str) -> list[dict[str, Any]]:
    """The room's events as the homeserver holds them (what a client without keys sees)."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"dir": "f", "limit": 500, **({"from": token} if token else {})}
        page = await account.api("GET", f"/rooms/{quote(room, safe='')}/messages", **params)
        events += page["chunk"]
        token = page.get("end")
        if not page["chunk"] or not token:
            return events


async def bodies_until(reader: Reader, room: str, last: str, timeout: float = 120) -> list[str]:
    """The room's readable bodies once `last` is among them (or whatever there is at the deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        bodies = (await reader.events(room)).bodies()
        if last in bodies or asyncio.get_running_loop().time() > deadline:
            return bodies
        await asyncio.sleep(0.5)


async def sent_by(account: Account, room: str, sender: str) -> list[dict[str, Any]]:
    """The non-state events `sender` has in the room, as the homeserver holds them, oldest first."""
    return [e for e in await raw_events(account, room) if e["sender"] == sender and "state_key" not in e]


def assert_nothing_in_the_clear(events: list[dict[str, Any]], bot: str) -> None:
    sent = [e for e in events if e["sender"] == bot and "state_key" not in e]
    assert sent, "the bot sent nothing"
    assert {e["type"] for e in sent} == {"m.room.encrypted"}, [e["type"] for e in sent]


async def test_every_bridge_is_read_by_elements_crypto(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin)
    alice = await e2ee_readers("alice")
    # Element's coming default (MSC4153): no keys to, no messages from, devices not signed by their owner.
    await alice.isolation("signed")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id], name="encrypted alerts")

    config = tmp_path / "alertmanager.yaml"
    am_port = free_port()
    config.write_text(yaml.safe_dump({
        "http": {"address": "127.0.0.1", "port": am_port, "basic-username": BASIC[0], "basic-password": BASIC[1]},
        "matrix": {"homeserver-url": synapse.url, "user-id": bot.user_id, "room-mapping": {"ops": room}},
        "receiver": {"message-mode": "group", "on-resolve": "edit"},
    }))  # fmt: skip
    hooks = [{"id": HOOK, "room": room}]
    # One bot account, one secret: every bridge's device is signed by the same identity.
    common = {"LOG_JSON": "true", "ENCRYPTION_KEY": ENCRYPTION_KEY}
    specs = {
        "notify": (free_port(), {"TOKEN": NOTIFY_TOKEN, "DEFAULT_ROOM": room}),
        "slack-webhook": (free_port(), {"HOOKS": json.dumps(hooks)}),
        "sentry-webhook": (free_port(), {"CLIENT_SECRET": SECRET, "DEFAULT_ROOM": room}),
        "alertmanager-receiver": (am_port, {"CONFIG_PATH": str(config)}),
    }
    services = {}
    for name, (port, env) in specs.items():
        service = LocalService.of(name, port, {**common, **env}, tmp_path / name)
        service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        started.append(service)
        services[name] = service
    for service in services.values():
        service.wait_ready()

    await post_notify(http, services["notify"], "notify: disk almost full")
    slack = await http.post(
        f"{services['slack-webhook'].url}/hooks/{HOOK}", json={"text": "*slack*: deployed"}
    )
    assert slack.status_code == 200, slack.text
    created = json.loads((SENTRY_DATA / "sentry_issue_created.json").read_bytes())
    resolved = {**created, "action": "resolved", "data": {**created["data"], "resolution_type": "now"}}
    for payload in (created, resolved):
        raw = json.dumps(payload).encode()
        answer = await http.post(
            f"{services['sentry-webhook'].url}/sentry", content=raw,
            headers={"Content-Type": "application/json", "Sentry-Hook-Resource": "issue",
                     "Request-ID": uuid.uuid4().hex, "Sentry-Hook-Timestamp": "1662377141",
                     "Sentry-Hook-Signature": sign(raw)},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
    alert = {"labels": {"alertname": "DiskFull", "severity": "warning"}, "annotations": {"summary": "disk"},
             "startsAt": "2026-12-01T00:00:00Z", "fingerprint": "e2ee-disk"}  # fmt: skip
    credentials = base64.b64encode(":".join(BASIC).encode()).decode()
    for status in ("firing", "resolved"):
        body = {"version": "4", "status": status, "receiver": "matrix", "groupKey": "e2ee-group",
                "groupLabels": {"alertname": "DiskFull"}, "commonLabels": {}, "commonAnnotations": {},
                "externalURL": "http://alertmanager:9093",
                "alerts": [{**alert, "status": status, **({"endsAt": "2026-12-01T01:00:00Z"}
                                                          if status == "resolved" else {})}]}  # fmt: skip
        answer = await http.post(f"{services['alertmanager-receiver'].url}/alerts/ops", json=body,
                                 headers={"Authorization": f"Basic {credentials}"})  # fmt: skip
        assert answer.status_code == 200, answer.text
        if status == "firing":  # the edit needs the message it edits delivered first
            await alice.events(room, wait_for=5)

    view = await alice.events(room, wait_for=6, timeout=120)
    mine = [e for e in view.messages if e.sender == bot.user_id]
    assert [e.failure for e in mine] == [None] * 6, [(e.type, e.failure) for e in mine]
    assert all(e.encrypted and e.decrypted and e.wire_type == "m.room.encrypted" for e in mine)
    bodies = [e.body or "" for e in mine]
    assert any(b.startswith("notify: disk almost full") for b in bodies), bodies
    assert any("deployed" in b for b in bodies), bodies
    [root] = [e for e in mine if (e.body or "").startswith("🆕")]
    [thread] = [e for e in mine if (e.body or "").startswith("✅ Resolved")]
    assert thread.relates_to == {
        **(thread.relates_to or {}),
        "rel_type": "m.thread",
        "event_id": root.event_id,
    }
    [edit] = [e for e in mine if (e.relates_to or {}).get("rel_type") == "m.replace"]
    assert edit.relates_to is not None
    [firing] = [e for e in mine if e.event_id == edit.relates_to["event_id"]]  # shown with the edit applied
    assert firing.failure is None
    assert edit.content is not None
    assert "RESOLVED" in edit.content["m.new_content"]["body"], edit.content
    member = await login(synapse, http, "alice", PASSWORD)  # the homeserver's view, through a member
    assert_nothing_in_the_clear(await raw_events(member, room), bot.user_id)

    # Every bridge's device is signed by the bot's own cross-signing identity, as js-sdk checks it.
    devices = await alice.devices(bot.user_id)
    assert len(devices) == 4
    for device in devices:
        status = await alice.device_status(
            bot.user_id, device.device_id, wait=30, expect={"signed_by_owner": True}
        )
        assert status.signed_by_owner, device


async def test_a_later_device_reads_history_and_a_member_who_left_gets_no_new_keys(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin)
    alice = await e2ee_readers("alice")
    bob = await e2ee_readers("bob")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id, bob.user_id], name="history")
    await bob.join(room)
    service = notify("notify", tmp_path, room)
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    for n in (1, 2):
        await post_notify(http, service, f"before {n}")
    await alice.events(room, wait_for=2)

    phone = await e2ee_readers("alice")  # alice's second device, after those messages
    await post_notify(http, service, "after the phone")
    view = await phone.events(room, wait_for=3, timeout=120)
    assert view.bodies() == ["before 1", "before 2", "after the phone"], [
        (e.body, e.failure) for e in view.messages
    ]

    await bob.events(room, wait_for=3)
    await bob.leave(room)
    await post_notify(http, service, "after bob left")
    assert (await bodies_until(alice, room, "after bob left"))[-1] == "after bob left"
    member = await login(synapse, http, "alice", PASSWORD)
    events = await sent_by(member, room, bot.user_id)
    assert_nothing_in_the_clear(events, bot.user_id)
    later_session = events[-1]["content"]["session_id"]
    assert later_session != events[-2]["content"]["session_id"], "a member left: the room key must change"
    received = {
        m.get("session_id") for m in (await bob.traffic())["received"] if m.get("type") == "m.room_key"
    }
    assert events[-2]["content"]["session_id"] in received  # bob did get the keys while a member
    assert later_session not in received


async def test_an_unreadable_crypto_state_sends_nothing_in_the_clear(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin)
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id])
    plain = await alice.create_room(encrypted=False, invite=[bot.user_id])
    right = "right-key-0123456789abcdef"
    service = notify("notify", tmp_path, room, ENCRYPTION_KEY=right)
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    await post_notify(http, service, "first")
    await alice.events(room, wait_for=1)
    service.stop()

    service.env["ENCRYPTION_KEY"] = "wrong-key-0123456789abcdef"
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    service.wait_ready()
    await post_notify(http, service, "kept until it can be encrypted")
    await post_notify(http, service, "an unencrypted room is not held up", room=plain)
    assert (await alice.events(plain, wait_for=1)).bodies() == ["an unencrypted room is not held up"]
    for _ in range(100):
        if metric_sum(f"{service.url}/metrics", "matrix_stack_encryption_failures_total") >= 1:
            break
        await asyncio.sleep(0.1)
    assert metric_sum(f"{service.url}/metrics", "matrix_stack_outbox_queue_depth") == 1
    errors = [line for line in json_log_lines(service.log) if line.get("level") == "ERROR"]
    assert any("cannot be read" in json.dumps(line) for line in errors), errors[-3:]
    member = await login(synapse, http, "alice", PASSWORD)
    assert_nothing_in_the_clear(await raw_events(member, room), bot.user_id)
    assert len(await sent_by(member, room, bot.user_id)) == 1
    service.stop()

    service.env["ENCRYPTION_KEY"] = right  # fixed: the queued message goes out, encrypted
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    service.wait_ready()
    view = await alice.events(room, wait_for=2, timeout=120)
    assert view.bodies() == ["first", "kept until it can be encrypted"]
    assert_nothing_in_the_clear(await raw_events(member, room), bot.user_id)


async def test_two_replicas_share_one_device_and_a_kill_loses_no_message(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    postgres: LocalPostgres,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin, rate=20)  # 300 messages take 15 s: the kill lands mid-stream
    alice = await e2ee_readers("alice")
    rooms = [
        await alice.create_room(encrypted=True, invite=[bot.user_id], name=f"replicas {i}") for i in range(3)
    ]
    url = postgres.create_database(f"e2ee_{uuid.uuid4().hex[:8]}")
    env = {"OUTBOX_URL": url, "ENCRYPTION_KEY": ENCRYPTION_KEY, "OUTBOX_LEASE_SECONDS": "3"}
    a, b = notify("a", tmp_path, rooms[0], **env), notify("b", tmp_path, rooms[0], **env)
    for replica in (a, b):
        replica.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        started.append(replica)
    for replica in (a, b):
        replica.wait_ready()
    for number in range(100):  # every message accepted (committed) before the kill, through both replicas
        for index, room in enumerate(rooms):
            await post_notify(http, (a, b)[(number + index) % 2], f"msg {index}-{number:03}", room=room)

    member = await login(synapse, http, "alice", PASSWORD)

    async def sent() -> int:
        return sum(
            [len([e for e in await raw_events(member, r) if e["sender"] == bot.user_id]) for r in rooms]
        )

    for _ in range(600):
        if await sent() >= 60:
            break
        await asyncio.sleep(0.05)
    holder = a if metric_sum(f"{a.url}/metrics", "matrix_stack_encryption_ready") == 1 else b
    assert metric_sum(f"{holder.url}/metrics", "matrix_stack_encryption_ready") == 1
    assert holder.process is not None
    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait()
    assert 60 <= await sent() < 300, "the kill must land mid-stream"
    other = b if holder is a else a

    for index, room in enumerate(rooms):
        view = await alice.events(room, wait_for=100, timeout=240)
        mine = {e.event_id: e for e in view.messages if e.sender == bot.user_id}
        assert [(e.body, e.failure) for e in mine.values() if e.failure] == [], "every message decrypts"
        # In the room's order as the homeserver keeps it: exactly once each, in the order accepted.
        raw = await raw_events(member, room)
        order = [e["event_id"] for e in raw if e["sender"] == bot.user_id and "state_key" not in e]
        bodies = [mine[event_id].body for event_id in order]
        assert bodies == [f"msg {index}-{n:03}" for n in range(100)], (index, bodies)
    assert metric_sum(f"{other.url}/metrics", "matrix_stack_encryption_ready") == 1
    assert_nothing_in_the_clear([e for r in rooms for e in await raw_events(member, r)], bot.user_id)


async def test_a_room_that_turns_encryption_on_is_encrypted_from_the_next_message(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin)
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=False, invite=[bot.user_id])
    service = notify("notify", tmp_path, room)
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    await post_notify(http, service, "in the clear, as the room is")
    assert await bodies_until(alice, room, "in the clear, as the room is")
    member = await login(synapse, http, "alice", PASSWORD)
    await member.api(
        "PUT",
        f"/rooms/{quote(room, safe='')}/state/m.room.encryption/",
        {"algorithm": "m.megolm.v1.aes-sha2"},
    )
    # The bot reads an unencrypted room's state again when its last read is older than this.
    await asyncio.sleep(UNENCRYPTED_RECHECK)
    await post_notify(http, service, "encrypted from now on")
    bodies = await bodies_until(alice, room, "encrypted from now on")
    assert bodies == ["in the clear, as the room is", "encrypted from now on"]
    sent = await sent_by(member, room, bot.user_id)
    assert [e["type"] for e in sent] == ["m.room.message", "m.room.encrypted"]


async def test_room_key_requests_are_answered_for_members_only(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    # Element asks only its own user's devices for keys; other clients (and older Element) ask the
    # sender. A device of its own (devstack.e2ee_devices: vodozemac) stands for such a client here.
    bot = await new_bot(synapse, http, admin)
    alice = await e2ee_readers("alice")
    bob_name, carol_name = f"bob-{uuid.uuid4().hex[:6]}", f"carol-{uuid.uuid4().hex[:6]}"
    bob = await register(synapse, http, bob_name, PASSWORD)
    await register(synapse, http, carol_name, PASSWORD)
    room = await alice.create_room(encrypted=True, invite=[bot.user_id, bob.user_id])
    await bob.join(room)
    service = notify("notify", tmp_path, room)
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    await post_notify(http, service, "sent while bob had no device")
    await bodies_until(alice, room, "sent while bob had no device")
    member = await login(synapse, http, "alice", PASSWORD)
    [sent] = await sent_by(member, room, bot.user_id)
    keys = await member.api("POST", "/keys/query", {"device_keys": {bot.user_id: []}})
    [bot_device] = keys["device_keys"][bot.user_id]

    async def ask(device: MemberDevice) -> None:
        request = {"action": "request", "request_id": uuid.uuid4().hex, "requesting_device_id": device.device_id,
                   "body": {"algorithm": "m.megolm.v1.aes-sha2", "room_id": room,
                            "session_id": sent["content"]["session_id"],
                            "sender_key": sent["content"]["sender_key"]}}  # fmt: skip
        await device.account.api("PUT", f"/sendToDevice/m.room_key_request/{uuid.uuid4().hex}",
                                 {"messages": {bot.user_id: {bot_device: request}}})  # fmt: skip

    async def key_within(device: MemberDevice, seconds: float) -> bool:
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            await device.sync_keys(timeout_ms=1000)
            if sent["content"]["session_id"] in device.keys:
                return True
        return False

    # Bob's new device announces itself before its one-time keys are on the server (the order Synapse
    # stores one upload in, and that of clients that upload them apart): the bot finds none to claim...
    phone = await login_device(synapse, http, bob_name, PASSWORD, "BOBPHONE", one_time=0)
    for _ in range(600):
        if any(line.get("device") == "BOBPHONE" and "no one-time key" in line.get("msg", "")
               for line in json_log_lines(service.log)):  # fmt: skip
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the bot did not try to send bob's new device its room keys")
    await phone.upload_one_time_keys()
    assert await key_within(phone, 60)  # ...and sends them once there are: bob was a member when it was sent
    phone.keys.clear()  # lost: asked for again
    await ask(phone)
    assert await key_within(phone, 60)
    assert (phone.decrypt(sent) or {}).get("content", {}).get("body") == "sent while bob had no device"

    stranger = await login_device(synapse, http, carol_name, PASSWORD, "CAROLPHONE")
    await ask(stranger)
    for _ in range(100):
        if "refused a room key request" in service.log.read_text():
            break
        await asyncio.sleep(0.1)
    assert "refused a room key request" in service.log.read_text()
    assert not await key_within(stranger, 2)


async def test_key_sharing_to_cross_signed_devices_only(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin)
    dana = await e2ee_readers(f"dana-{uuid.uuid4().hex[:6]}")  # a user of her own: cross-signed below
    room = await dana.create_room(encrypted=True, invite=[bot.user_id])
    service = notify("notify", tmp_path, room, KEY_SHARING="cross-signed")
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    await post_notify(http, service, "to an unsigned device")
    view = await dana.events(room, wait_for=1, settled=True, timeout=30)
    [unsigned] = [e for e in view.messages if e.sender == bot.user_id]
    assert unsigned.failure is not None  # no key for a device its owner did not sign

    assert (await dana.bootstrap_cross_signing())["ready"]
    await post_notify(http, service, "to a cross-signed device")
    assert "to a cross-signed device" in await bodies_until(dana, room, "to a cross-signed device")


async def test_a_bridge_restarted_mid_stream_delivers_every_message_decryptable(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    e2ee_readers: MakeReader,
    started: list[LocalService],
    tmp_path: Path,
) -> None:
    bot = await new_bot(synapse, http, admin, rate=20)  # 100 messages take 5 s: the restart lands mid-stream
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id])
    service = notify("notify", tmp_path, room)
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    started.append(service)
    service.wait_ready()
    for number in range(100):
        await post_notify(http, service, f"msg {number:03}")
    member = await login(synapse, http, "alice", PASSWORD)

    async def sent() -> int:
        return len(await sent_by(member, room, bot.user_id))

    for _ in range(600):
        if await sent() >= 20:
            break
        await asyncio.sleep(0.05)
    service.stop()  # SIGTERM: the rest stays in the outbox
    assert 20 <= await sent() < 100, "the restart must land mid-stream"
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    service.wait_ready()
    view = await alice.events(room, wait_for=100, timeout=180)
    mine = {e.event_id: e for e in view.messages if e.sender == bot.user_id}
    assert [(e.body, e.failure) for e in mine.values() if e.failure] == [], "every message decrypts"
    order = [
        e["event_id"]
        for e in await raw_events(member, room)
        if e["sender"] == bot.user_id and "state_key" not in e
    ]
    assert [mine[event_id].body for event_id in order] == [f"msg {n:03}" for n in range(100)]
