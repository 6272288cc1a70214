"""alertmanager-receiver: notifications/s for a 20-alert group (group template and outbox on) and
acknowledge latency, against a bare starlette endpoint on the same uvicorn setup, in the same run;
and against matrix-alertbot 0.3.3 (bench/alertbot.py), on the same Synapse, fed the same notification:
notifications/s accepted and delivered (its messages in the room), beside Synapse's own ceiling for
messages into one room (it posts one per alert, one after the other, before it answers); and the time
from a 🔕 reaction on each bot's alert message to the silence in a real Alertmanager (Debian's).
"""

from __future__ import annotations

import base64
import os
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

from bench.alertbot import alertbot, alertbot_account, alertbot_command, group
from bench.delivery import Delivery, delivered, room_ceiling
from bench.homeserver import PASSWORD, Homeserver, durable_postgres, homeserver, serving
from bench.loadgen import Comparison, against_bare, closed_loop
from bench.silence_latency import silence_latencies
from devstack.alertmanager import LocalAlertmanager
from devstack.processes import ENCRYPTION_KEY, free_port
from devstack.stack import LocalService

REQUESTS = 2000
CONNECTIONS = 32
RATE = 100.0
SECONDS = 10.0
ALERTBOT_REQUESTS = 64  # 1,280 messages: it posts 20 to Synapse, one after the other, before it answers
OURS_REQUESTS = 640
OURS_ALERT_MODE_REQUESTS = 32  # 640 messages, sent in order
CEILING_MESSAGES = 640
TRIALS = 7
PEER_TARGET = 3.0
BASIC = "bench-basic"
AUTH = "Basic " + base64.b64encode(f"alertmanager:{BASIC}".encode()).decode()


def headers() -> dict[str, str]:
    return {"Authorization": AUTH, "X-Request-Id": uuid.uuid4().hex}


def ours_service(
    hs: Homeserver,
    directory: Path,
    name: str,
    room: str,
    sections: dict[str, Any],
    env: dict[str, str] | None = None,
) -> LocalService:
    """Our receiver as the bot, `room` mapped as `ops`, with the given config sections."""
    port = free_port()
    config = {"http": {"address": "127.0.0.1", "port": port, "basic-password": BASIC},
              "matrix": {"homeserver-url": hs.synapse.url, "user-id": hs.bot.user_id, "room-mapping": {"ops": room}},
              **sections}  # fmt: skip
    (directory / f"config-{name}.yaml").write_text(yaml.safe_dump(config))
    return LocalService.of("alertmanager-receiver", port, {"CONFIG_PATH": str(directory / f"config-{name}.yaml"),
                           "LOG_LEVEL": "WARNING", **(env or {})}, directory / f"ours-{name}")  # fmt: skip


def alertmanager_to(port: int, ours_port: int, theirs_port: int, room: str) -> LocalAlertmanager:
    """Debian's Alertmanager notifying both bots of every group (one per alert name)."""
    webhooks = [{"url": f"http://127.0.0.1:{ours_port}/alerts/ops", "send_resolved": True,
                 "http_config": {"basic_auth": {"username": "alertmanager", "password": BASIC}}},
                {"url": f"http://127.0.0.1:{theirs_port}/alerts/{room}", "send_resolved": True}]  # fmt: skip
    config = {"route": {"receiver": "bots", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                        "repeat_interval": "1h"},
              "receivers": [{"name": "bots", "webhook_configs": webhooks}]}  # fmt: skip
    return LocalAlertmanager(port, config)


def delivery_line(label: str, result: Delivery) -> str:
    return (f"  {label:38}: accepted {result.accepted.rate:7.1f}/s (p50 "
            f"{statistics.median(result.accepted.latencies) * 1000:6.0f} ms), delivered {result.delivered_rate:7.1f}/s "
            f"({result.messages} messages, {result.messages / result.seconds:5.1f} messages/s), "
            f"statuses {result.accepted.statuses}")  # fmt: skip


async def ours_delivered(hs: Homeserver, directory: Path, room: str, body: bytes) -> dict[str, Delivery]:
    """A fresh receiver per message mode: a message per notification (ours by default), then per alert."""
    results = {}
    for mode, requests, per in (("group", OURS_REQUESTS, 1), ("alert", OURS_ALERT_MODE_REQUESTS, 20)):
        ours = ours_service(hs, directory, f"delivery-{mode}", room,
                            {"receiver": {"message-mode": mode, "on-resolve": "new"}})  # fmt: skip
        ours.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
        try:
            ours.wait_ready()
            results[mode] = await delivered(f"{ours.url}/alerts/ops", body, requests=requests,
                                            connections=CONNECTIONS, reader=hs.admin, room=room,
                                            sender=hs.bot.user_id, per_notification=per, headers=headers)  # fmt: skip
        finally:
            ours.stop()
    return results


async def peers(directory: Path, hs: Homeserver) -> None:
    """matrix-alertbot against ours: accepted and delivered, then reaction → silence."""
    theirs_room, ours_room, shared_room = hs.rooms
    command = alertbot_command()
    account = await alertbot_account(hs, [theirs_room, shared_room])
    body = group()
    # Before any bot runs (after a warm-up: Synapse's first sends into a room are slower): what Synapse
    # takes into one room, the bound for a message per alert.
    await room_ceiling(account, theirs_room, CEILING_MESSAGES // 10, CONNECTIONS)
    ceiling = await room_ceiling(account, theirs_room, CEILING_MESSAGES, CONNECTIONS)
    manager_port, theirs_port = free_port(), free_port()
    # Ours acting on reactions: its crypto device (password, key) fetches the reacted-to event.
    actions = ours_service(hs, directory, "actions", shared_room, {
        "receiver": {"message-mode": "group", "on-resolve": "edit"},
        "actions": {"alertmanager-url": f"http://127.0.0.1:{manager_port}"}}, {"ENCRYPTION_KEY": ENCRYPTION_KEY})  # fmt: skip
    manager = alertmanager_to(manager_port, actions.port, theirs_port, shared_room)
    manager.start()
    try:
        with alertbot(
            command, hs, account, [theirs_room, shared_room], manager.url, theirs_port, directory
        ) as base:
            url = f"{base}/alerts/{theirs_room}"
            await closed_loop(url, body, requests=8, connections=4)
            # The same, with it following the room: every message wakes its /sync (full_state=True).
            following = await room_ceiling(account, theirs_room, CEILING_MESSAGES, CONNECTIONS)
            theirs = await delivered(url, body, requests=ALERTBOT_REQUESTS, connections=CONNECTIONS,
                                     reader=hs.admin, room=theirs_room, sender=account.user_id, per_notification=20)  # fmt: skip
            mine = await ours_delivered(hs, directory, ours_room, body)
            actions.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
            try:
                actions.wait_ready()
                latencies = await silence_latencies(manager, hs.admin, shared_room,
                                                    {"ours": hs.bot.user_id, "theirs": account.user_id}, TRIALS)  # fmt: skip
            finally:
                actions.stop()
    finally:
        manager.stop()
    print_peers(len(body), (ceiling, following), theirs, mine, latencies)


def print_peers(
    size: int, ceilings: tuple[float, float], theirs: Delivery, mine: dict[str, Delivery],
    latencies: dict[str, list[float]],
) -> None:  # fmt: skip
    ceiling, following = ceilings
    print(f"alertmanager-receiver vs matrix-alertbot 0.3.3 (its own venv and account, same Synapse, the same "
          f"{size}-byte 20-alert notification, {CONNECTIONS} connections; it answers once its 20 messages "
          f"are sent, we once the notification is durable; delivered = every message in the room):")  # fmt: skip
    print(f"  Synapse, one room, one unthrottled account: {ceiling:.1f} messages/s "
          f"(= {ceiling / 20:.1f} notifications/s at a message per alert); {following:.1f} with matrix-alertbot "
          f"following the room")  # fmt: skip
    print(delivery_line("matrix-alertbot 0.3.3 (message per alert)", theirs))
    for mode, result in mine.items():
        print(delivery_line(f"alertmanager-receiver ({mode} mode)", result))
    for mode, result in mine.items():  # the target is for ours as configured by default
        target = f" (target >= {PEER_TARGET:g})" if mode == "group" else ""
        print(f"  ratio ours ({mode} mode) / its: accepted {result.accepted.rate / theirs.accepted.rate:.1f}x, "
              f"delivered {result.delivered_rate / theirs.delivered_rate:.1f}x{target}")  # fmt: skip
    ours_median, theirs_median = (statistics.median(latencies[k]) for k in ("ours", "theirs"))
    print(
        f"🔕 reaction → silence in Alertmanager (Debian's {TRIALS} alerts, unencrypted room, room creator reacts):"
    )
    for label, values in latencies.items():
        print(f"  {label:6}: median {statistics.median(values) * 1000:6.0f} ms  "
              f"({', '.join(f'{v * 1000:.0f}' for v in values)} ms)")  # fmt: skip
    print(f"  ratio its / ours: {theirs_median / ours_median:.2f}x (target >= 1: ours no slower)")


# The fair floor: the same uvicorn setup parsing the body and committing one message to the same
# outbox (group mode posts one message per notification); the do-nothing endpoint is the ceiling.
FLOOR = "bare + parse + outbox commit"


async def main() -> None:
    body = group()
    alertbot_command()  # installed before Synapse starts
    with tempfile.TemporaryDirectory(prefix="bench-am-") as name, durable_postgres() as pg:
        directory = Path(name)
        async with homeserver(directory, rooms=3) as hs:
            # The peers first, on a quiet Synapse (our floor runs leave the outbox sending).
            await peers(directory, hs)
            for backend, url in (("sqlite", None), ("postgres", pg.create_database("am_bench"))):
                ours = ours_service(hs, directory, backend, hs.rooms[1],
                                    {"receiver": {"message-mode": "group", "on-resolve": "new"}})  # fmt: skip
                ours_label, floor = f"alertmanager-receiver ({backend})", f"{FLOOR} ({backend})"
                with serving(hs, ours, directory, url) as bare:
                    targets = {ours_label: f"{ours.url}/alerts/ops", floor: f"{bare}/commit/alerts/ops"}
                    if backend == "sqlite":
                        targets["bare starlette"] = f"{bare}/alerts/ops"
                    print(f"alertmanager-receiver vs bare starlette endpoints on the {backend} outbox, "
                          f"{len(body)}-byte 20-alert group, {os.cpu_count()} cores")  # fmt: skip
                    await against_bare(Comparison(ours_label, "notifications/s", 0.3, floor=floor), targets,
                                       body, requests=REQUESTS, connections=CONNECTIONS, rate=RATE,
                                       seconds=SECONDS, headers=headers)  # fmt: skip
