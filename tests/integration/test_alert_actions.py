"""Acting on alerts from the room: Debian's Alertmanager notifies the receiver, people in the room
react, reply and redact through Element's own client (matrix-js-sdk, in an encrypted room and in a
plain one), and Alertmanager's API shows the silences that made."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.alertmanager import LocalAlertmanager
from devstack.postgres import LocalPostgres
from devstack.processes import ENCRYPTION_KEY, free_port, metric_sum
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, lift_rate_limit, register
from tests.integration.conftest import PASSWORD
from tests.integration.e2ee_reader import Event, Reader

MakeReader = Callable[..., Awaitable[Reader]]
BASIC = ("alertmanager", "actions-basic-password")


@pytest.fixture
async def alertmanager_with_receiver(
    synapse: LocalSynapse, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[tuple[LocalAlertmanager, LocalService, Account]]]]:
    started: list[Any] = []

    async def start(room: str, bot: Account) -> tuple[LocalAlertmanager, LocalService, Account]:
        port, am_port = free_port(), free_port()
        config = tmp_path / "receiver.yaml"
        config.write_text(yaml.safe_dump({
            "http": {"address": "127.0.0.1", "port": port, "basic-username": BASIC[0], "basic-password": BASIC[1]},
            "matrix": {"homeserver-url": synapse.url, "user-id": bot.user_id, "room-mapping": {"ops": room}},
            "receiver": {"message-mode": "group", "on-resolve": "edit"},
            "actions": {"alertmanager-url": f"http://127.0.0.1:{am_port}", "power-level": 50, "look-seconds": 1},
        }))  # fmt: skip
        receiver = LocalService.of("alertmanager-receiver", port, {"CONFIG_PATH": str(config), "LOG_JSON": "true",
                                   "ENCRYPTION_KEY": ENCRYPTION_KEY}, tmp_path / "receiver")  # fmt: skip
        receiver.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        started.append(receiver)
        alertmanager = LocalAlertmanager(am_port, {
            "route": {"receiver": "matrix", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "matrix", "webhook_configs": [{
                "url": f"http://127.0.0.1:{port}/alerts/ops", "send_resolved": True,
                "http_config": {"basic_auth": {"username": BASIC[0], "password": BASIC[1]}}}]}],
        })  # fmt: skip
        alertmanager.start()
        started.append(alertmanager)
        receiver.wait_ready()
        return alertmanager, receiver, bot

    yield start
    for each in reversed(started):
        each.stop()


async def silences(alertmanager: LocalAlertmanager, state: str = "active") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.get(f"{alertmanager.url}/api/v2/silences")).json()
    return [s for s in answer if s["status"]["state"] == state]


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.3)


async def bot_messages(reader: Reader, room: str, bot: str) -> list[Event]:
    return [e for e in (await reader.events(room)).messages if e.sender == bot and e.failure is None]


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
async def test_reactions_replies_and_redactions_silence_and_unsilence(
    alertmanager_with_receiver: Callable[..., Awaitable[tuple[LocalAlertmanager, LocalService, Account]]],
    e2ee_readers: MakeReader,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    encrypted: bool,
) -> None:
    bot = await register(synapse, http, f"ambot-{uuid.uuid4().hex[:8]}", PASSWORD)
    alice = await e2ee_readers("alice")  # the room's creator: above every power level (room version 12)
    bob = await e2ee_readers("bob")  # a member at power level 0
    room = await alice.create_room(encrypted=encrypted, invite=[bob.user_id, bot.user_id], name="on call")
    await bob.join(room)
    alertmanager, receiver, _ = await alertmanager_with_receiver(room, bot)
    now = datetime.now(UTC)
    alerts = [{"labels": {"alertname": "DiskFull", "instance": "node-1", "severity": "warning"},
               "annotations": {"summary": "Disk full"}, "startsAt": now.isoformat()}]  # fmt: skip
    await asyncio.to_thread(alertmanager.post_alerts, alerts)
    [alert] = await until(lambda: bot_messages(alice, room, bot.user_id))
    assert alert.encrypted is encrypted

    # bob (power 0) may not; alice's reaction silences the group until it resolves.
    await bob.reply(room, alert.event_id, "silence 2h")
    refused = await until(lambda: _bodies_with(alice, room, bot.user_id, "⛔"))
    assert "power level 50" in refused[0]
    assert await silences(alertmanager) == []
    reaction = await alice.react(room, alert.event_id, "🔕")
    [silence] = await until(lambda: silences(alertmanager))
    assert silence["createdBy"] == alice.user_id
    assert sorted((m["name"], m["value"], m["isRegex"]) for m in silence["matchers"]) == [
        ("alertname", "DiskFull", False),
        ("instance", "node-1", False),
        ("severity", "warning", False),
    ]  # the group's common labels (of its one alert: all of them)
    assert f"(alert {alert.event_id} in {room})" in silence["comment"]
    shown = await until(lambda: _bodies_with(alice, room, bot.user_id, "🔕 silenced by"))
    assert f"🔕 silenced by {alice.user_id} until it resolves" in shown[0]

    # Removing the reaction expires it; a timed reply makes a new one, ending in two hours.
    await alice.redact(room, reaction)
    assert await until(lambda: _none_active(alertmanager))
    await alice.reply(room, alert.event_id, "silence 2h maintenance")
    [timed] = await until(lambda: silences(alertmanager))
    ends = datetime.fromisoformat(timed["endsAt"].replace("Z", "+00:00"))
    assert timedelta(hours=1, minutes=58) < ends - datetime.now(UTC) < timedelta(hours=2, minutes=1)
    assert timed["comment"].startswith(f"maintenance by {alice.user_id} (for 2h)")
    listing = await alice.send(room, "!alert list")
    assert listing
    assert await until(lambda: _bodies_with(alice, room, bot.user_id, "Active silences made from Matrix"))
    await alice.reply(room, alert.event_id, "unsilence")
    assert await until(lambda: _none_active(alertmanager))

    # Until resolved: the alert resolving expires the silence.
    await alice.react(room, alert.event_id, "💤")
    assert await until(lambda: silences(alertmanager))
    ended = (now + timedelta(seconds=1)).isoformat()
    await asyncio.to_thread(alertmanager.post_alerts, [{**a, "endsAt": ended} for a in alerts])
    assert await until(lambda: _none_active(alertmanager))
    assert len(await silences(alertmanager, "expired")) == 3
    log = receiver.log.read_text()
    assert "silence created from Matrix" in log
    assert PASSWORD not in log


async def _bodies_with(reader: Reader, room: str, bot: str, text: str) -> list[str]:
    return [e.body or "" for e in await bot_messages(reader, room, bot) if text in (e.body or "")]


async def _none_active(alertmanager: LocalAlertmanager) -> bool:
    return await silences(alertmanager) == []


async def test_two_receivers_one_killed_while_50_reactions_arrive(
    e2ee_readers: MakeReader,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    postgres: LocalPostgres,
    tmp_path: Path,
) -> None:
    bot = await register(synapse, http, f"ambot-{uuid.uuid4().hex[:8]}", PASSWORD)
    await lift_rate_limit(admin, bot.user_id)
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id], name="on call, replicated")
    am_port = free_port()
    url = postgres.create_database(f"actions_{uuid.uuid4().hex[:8]}")
    replicas = []
    for name in ("a", "b"):
        port = free_port()
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({
            "http": {"address": "127.0.0.1", "port": port, "basic-username": BASIC[0], "basic-password": BASIC[1]},
            "matrix": {"homeserver-url": synapse.url, "user-id": bot.user_id, "room-mapping": {"ops": room}},
            "actions": {"alertmanager-url": f"http://127.0.0.1:{am_port}", "look-seconds": 1},
        }))  # fmt: skip
        env = {"CONFIG_PATH": str(config), "LOG_JSON": "true", "ENCRYPTION_KEY": ENCRYPTION_KEY,
               "OUTBOX_URL": url, "OUTBOX_LEASE_SECONDS": "3"}  # fmt: skip
        replica = LocalService(f"am-{name}", "matrix_stack.services.alertmanager_receiver",
                               "ALERTMANAGER_RECEIVER_", port, env, tmp_path / name)  # fmt: skip
        replica.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        replicas.append(replica)
    alertmanager = LocalAlertmanager(am_port, {
        "route": {"receiver": "matrix", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "matrix", "webhook_configs": [{
            "url": f"{replicas[0].url}/alerts/ops", "send_resolved": True,
            "http_config": {"basic_auth": {"username": BASIC[0], "password": BASIC[1]}}}]}],
    })  # fmt: skip
    try:
        alertmanager.start()
        for replica in replicas:
            replica.wait_ready()
        now = datetime.now(UTC).isoformat()
        await asyncio.to_thread(alertmanager.post_alerts, [
            {"labels": {"alertname": f"Alert{n:02}", "severity": "warning"}, "startsAt": now} for n in range(50)
        ])  # fmt: skip

        async def fifty() -> list[Event] | None:
            found = await bot_messages(alice, room, bot.user_id)
            return found if len(found) >= 50 else None

        alerts = await until(fifty, timeout=120)
        assert alerts is not None

        async def react_to_all() -> None:
            for alert in alerts:
                await alice.react(room, alert.event_id, "🔕")

        reacting = asyncio.create_task(react_to_all())
        assert await until(lambda: _at_least(alertmanager, 10), timeout=120)
        holder = next(
            r for r in replicas if metric_sum(f"{r.url}/metrics", "matrix_stack_encryption_ready") == 1
        )
        assert holder.process is not None
        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait()
        assert len(await silences(alertmanager)) < 50, "the kill must land mid-stream"
        await reacting

        assert await until(lambda: _at_least(alertmanager, 50), timeout=180)
        await asyncio.sleep(3)  # a doubled silence or edit would show by now
        active = await silences(alertmanager)
        names = sorted(m["value"] for s in active for m in s["matchers"] if m["name"] == "alertname")
        assert names == [f"Alert{n:02}" for n in range(50)], "each alert silenced exactly once"

        async def edits() -> Counter[str] | None:
            view = await alice.events(room)
            count: Counter[str] = Counter(
                str((e.relates_to or {}).get("event_id")) for e in view.messages
                if e.sender == bot.user_id and (e.relates_to or {}).get("rel_type") == "m.replace"
            )  # fmt: skip
            return count if len(count) >= 50 else None

        count = await until(edits, timeout=120)
        assert count is not None
        assert sorted(count) == sorted(a.event_id for a in alerts)
        assert set(count.values()) == {1}, "every alert edited exactly once"
        [other] = [r for r in replicas if r is not holder]
        assert metric_sum(f"{other.url}/metrics", "matrix_stack_encryption_ready") == 1  # it took over
    finally:
        alertmanager.stop()
        for replica in replicas:
            replica.stop()


async def _at_least(alertmanager: LocalAlertmanager, count: int) -> bool:
    return len(await silences(alertmanager)) >= count


async def test_an_unreachable_alertmanager_gets_a_reply_not_a_traceback(
    alertmanager_with_receiver: Callable[..., Awaitable[tuple[LocalAlertmanager, LocalService, Account]]],
    e2ee_readers: MakeReader,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
) -> None:
    bot = await register(synapse, http, f"ambot-{uuid.uuid4().hex[:8]}", PASSWORD)
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id], name="on call, no alertmanager")
    alertmanager, receiver, _ = await alertmanager_with_receiver(room, bot)
    alerts = [{"labels": {"alertname": "Unreachable", "severity": "warning"},
               "startsAt": datetime.now(UTC).isoformat()}]  # fmt: skip
    await asyncio.to_thread(alertmanager.post_alerts, alerts)
    [alert] = await until(lambda: bot_messages(alice, room, bot.user_id))
    alertmanager.stop()
    await alice.reply(room, alert.event_id, "silence 1h")
    [answer] = await until(lambda: _bodies_with(alice, room, bot.user_id, "Alertmanager is unreachable"))
    assert "nothing changed" in answer
    assert "Traceback" not in receiver.log.read_text()


async def test_a_silence_ended_in_alertmanager_shows_on_the_alert(
    alertmanager_with_receiver: Callable[..., Awaitable[tuple[LocalAlertmanager, LocalService, Account]]],
    e2ee_readers: MakeReader,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
) -> None:
    bot = await register(synapse, http, f"ambot-{uuid.uuid4().hex[:8]}", PASSWORD)
    alice = await e2ee_readers("alice")
    room = await alice.create_room(encrypted=True, invite=[bot.user_id], name="on call, UI")
    alertmanager, _, _ = await alertmanager_with_receiver(room, bot)
    alerts = [{"labels": {"alertname": "EndedInTheUI", "severity": "warning"},
               "startsAt": datetime.now(UTC).isoformat()}]  # fmt: skip
    await asyncio.to_thread(alertmanager.post_alerts, alerts)
    [alert] = await until(lambda: bot_messages(alice, room, bot.user_id))
    await alice.reply(room, alert.event_id, "silence 1h")
    [silence] = await until(lambda: silences(alertmanager))
    assert await until(lambda: _bodies_with(alice, room, bot.user_id, "🔕 silenced by"))
    async with httpx.AsyncClient(timeout=10) as client:  # what Alertmanager's UI does to expire it
        (await client.delete(f"{alertmanager.url}/api/v2/silence/{silence['id']}")).raise_for_status()
    shown = await until(lambda: _bodies_with(alice, room, bot.user_id, "🔔 silence ended"))
    assert shown, "the receiver's next look notices the silence is gone and says so on the alert"
