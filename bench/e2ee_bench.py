"""End-to-end encryption in a bridge (notify), against one real Synapse in one run: messages/s into
an encrypted room with 1 and with 50 member devices against the same into an unencrypted room; the
time to share a room key with 50 devices (first message into a fresh encrypted room, with and
without Olm sessions already made) and with a member's new device; the idle RSS of a bridge with
encryption on against the same with it off.

Member devices are real: logged in and with identity and one-time keys uploaded (devstack.e2ee_devices),
so the bot claims keys, makes Olm sessions and sends to-device messages as it would for Element.
Delivery is measured from the first POST until the last event is in the room (read by a member).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from bench.homeserver import PASSWORD, Homeserver, homeserver
from devstack.e2ee_devices import MemberDevice, login_device
from devstack.processes import ENCRYPTION_KEY, free_port
from devstack.stack import LocalService
from devstack.synapse import Account, register
from matrix_stack.shared.matrix.crypto.devices import MEGOLM

MESSAGES = 400  # per run
ROUNDS = 2  # runs per room, in a rotated order each round
CONCURRENCY = 8  # POSTs in flight
MEMBERS = 5  # users holding the 50 devices
DEVICES_EACH = 10
TOKEN = "e2ee-bench-token-0123456789"
SETTLE = 1.0  # seconds between a new device's upload and the triggering POST (the bot's /sync sees it)
IDLE = 5.0
SENT_TYPES = ("m.room.message", "m.room.encrypted")
SENT_METRIC = "matrix_stack_outbox_deliveries_total"


def bridge(directory: Path, name: str, **env: str) -> LocalService:
    base = {"TOKEN": TOKEN, "LOG_LEVEL": "WARNING", "ENCRYPTION_KEY": ENCRYPTION_KEY}
    return LocalService.of("notify", free_port(), {**base, **env}, directory / name)


async def make_room(admin: Account, name: str, members: list[Account], *, encrypted: bool) -> str:
    body: dict[str, Any] = {"preset": "private_chat", "name": name, "invite": [m.user_id for m in members]}
    if encrypted:  # as Element creates private rooms: Megolm with the spec's default rotation
        body["initial_state"] = [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": MEGOLM}}
        ]
    room = str((await admin.api("POST", "/createRoom", body))["room_id"])
    for member in members:
        await member.join(room)
    return room


async def post(http: httpx.AsyncClient, service: LocalService, room: str, text: str) -> None:
    response = await http.post(f"{service.url}/notify/{quote(room, safe='')}", content=text.encode(),
                               headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"})  # fmt: skip
    assert response.status_code == 202, response.text


async def post_all(http: httpx.AsyncClient, service: LocalService, room: str, texts: list[str]) -> None:
    pending = iter(texts)

    async def worker() -> None:
        for text in pending:
            await post(http, service, room, text)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def room_end(reader: Account, room: str) -> str:
    """A pagination token at the room's current end: what comes after it is new."""
    return str(
        (await reader.api("GET", f"/rooms/{quote(room, safe='')}/messages", dir="b", limit=1))["start"]
    )


async def wait_sent(
    reader: Account, room: str, sender: str, token: str, count: int, timeout: float = 180
) -> tuple[float, list[dict[str, Any]]]:
    """When the room holds `count` messages from `sender` after `token` (perf_counter), and them."""
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        page = await reader.api("GET", f"/rooms/{quote(room, safe='')}/messages", dir="f", limit=1000,
                                **{"from": token})  # fmt: skip
        events += [e for e in page["chunk"] if e["sender"] == sender and e["type"] in SENT_TYPES]
        token = page.get("end", token)
        if not page["chunk"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(events)} of {count} messages arrived in {room}")
            await asyncio.sleep(0.05)
    return time.perf_counter(), events


async def sent_count(http: httpx.AsyncClient, service: LocalService) -> float:
    """Deliveries the bridge has had accepted by the homeserver (its outbox's counter)."""
    text = (await http.get(f"{service.url}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(SENT_METRIC) and 'outcome="sent"' in line)  # fmt: skip


@dataclass
class Delivery:
    rate: float  # messages/s
    bridge_ms: float  # CPU of the bridge per message
    synapse_ms: float  # CPU of Synapse per message


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def delivery_rate(
    http: httpx.AsyncClient, service: LocalService, reader: Account, hs: Homeserver, room: str, label: str,
    *, encrypted: bool, count: int = MESSAGES,
) -> Delivery:  # fmt: skip
    """Messages/s from the first POST until the homeserver accepted the last (watched on the bridge's
    metrics, which costs Synapse nothing), then every one checked in the room."""
    token = await room_end(reader, room)
    before = await sent_count(http, service)
    assert service.process is not None
    assert hs.synapse.process is not None
    pids = (service.process.pid, hs.synapse.process.pid)
    cpu_before = [cpu_seconds(pid) for pid in pids]
    texts = [f"{label} {i}" for i in range(count)]
    started = time.perf_counter()
    sending = asyncio.create_task(post_all(http, service, room, texts))
    deadline = time.monotonic() + 180
    while await sent_count(http, service) < before + count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}: not every message was delivered")
        await asyncio.sleep(0.1)  # scraping the bridge faster costs it CPU the runs compare
    done = time.perf_counter()
    bridge_cpu, synapse_cpu = (cpu_seconds(pid) - b for pid, b in zip(pids, cpu_before, strict=True))
    await sending
    _, events = await wait_sent(reader, room, hs.bot.user_id, token, count)
    kinds = {e["type"] for e in events}
    assert kinds == {"m.room.encrypted" if encrypted else "m.room.message"}, f"{label}: {kinds}"
    assert len(events) == count, f"{label}: {len(events)} events for {count} messages"
    return Delivery(count / (done - started), bridge_cpu * 1000 / count, synapse_cpu * 1000 / count)


async def follow(device: MemberDevice) -> None:
    """Long-poll as the device until cancelled, noting each room key as it arrives."""
    while True:
        await device.sync_keys(5000)


async def key_arrival(device: MemberDevice, session_id: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while session_id not in device.keys:
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.005)
    return device.keys[session_id].arrived


def assert_reads(device: MemberDevice, event: dict[str, Any], text: str) -> None:
    """The device decrypts the event with the key it was sent: the sharing worked, not just arrived."""
    opened = device.decrypt(event)
    assert opened is not None, "no key for the event"
    assert opened["content"]["body"] == text, opened


async def first_share(
    http: httpx.AsyncClient, service: LocalService, reader: Account, hs: Homeserver, room: str,
    device: MemberDevice,
) -> tuple[float, float]:  # fmt: skip
    """The first message into a room: POST -> event in the room, POST -> room key at `device`."""
    await device.sync_keys(0)  # earlier to-device messages out of the way
    watching = asyncio.create_task(follow(device))
    try:
        token = await room_end(reader, room)
        text = f"first into {room}"
        started = time.perf_counter()
        await post(http, service, room, text)
        sent, events = await wait_sent(reader, room, hs.bot.user_id, token, 1)
        arrived = await key_arrival(device, events[0]["content"]["session_id"], 30)
    finally:
        watching.cancel()
    assert arrived is not None, "the device never got the room key"
    assert_reads(device, events[0], text)
    return sent - started, arrived - started


async def new_device_share(
    http: httpx.AsyncClient, service: LocalService, reader: Account, hs: Homeserver, room: str, username: str,
) -> tuple[float, float, int]:  # fmt: skip
    """A member's new device appears: upload -> room key, triggering POST -> room key, and how many
    messages it took (the bot shares at its next message once its /sync has seen the device)."""
    device = await login_device(hs.synapse, http, username, PASSWORD, "NEWDEVICE")
    uploaded = time.perf_counter()
    watching = asyncio.create_task(follow(device))
    try:
        await asyncio.sleep(SETTLE)
        for trigger in range(1, 4):
            token = await room_end(reader, room)
            text = f"trigger {trigger}"
            started = time.perf_counter()
            await post(http, service, room, text)
            _, events = await wait_sent(reader, room, hs.bot.user_id, token, 1)
            arrived = await key_arrival(device, events[0]["content"]["session_id"], 5)
            if arrived is not None:
                assert_reads(device, events[0], text)
                return arrived - uploaded, arrived - started, trigger
    finally:
        watching.cancel()
    raise RuntimeError("the new device never got the room key in use")


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


async def idle_rss(
    http: httpx.AsyncClient, hs: Homeserver, directory: Path, reader: Account, room: str, *, encryption: bool
) -> float:
    """A fresh bridge (a new device of the bot), one message into `room`, then idle."""
    service = bridge(directory, f"rss-{encryption}", ENCRYPTION=str(encryption).lower())
    service.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
    try:
        service.wait_ready()
        token = await room_end(reader, room)
        await post(http, service, room, "idle after this")
        await wait_sent(reader, room, hs.bot.user_id, token, 1, timeout=60)
        await asyncio.sleep(IDLE)
        assert service.process is not None
        return vm_rss_mib(service.process.pid)
    finally:
        service.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-e2ee-") as name:
        directory = Path(name)
        # Cheap password hashes: 50 device logins, not a bcrypt benchmark.
        async with homeserver(directory, rooms=0, extra_config={"bcrypt_rounds": 4}) as hs, \
                httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as http:  # fmt: skip
            await run(hs, http, directory)


async def run(hs: Homeserver, http: httpx.AsyncClient, directory: Path) -> None:
    admin = hs.admin  # creates the rooms and reads them (a member without keys)
    solo = await register(hs.synapse, http, "solo", PASSWORD)
    usernames = [f"member{n}" for n in range(MEMBERS)]
    for username in usernames:
        await register(hs.synapse, http, username, PASSWORD)
    solo_device = await login_device(hs.synapse, http, "solo", PASSWORD, "SOLO")
    devices = [
        await login_device(hs.synapse, http, u, PASSWORD, f"D{i}")
        for u in usernames
        for i in range(DEVICES_EACH)
    ]
    owners = {d.user_id: d.account for d in devices}
    many = list(owners.values())
    plain = await make_room(admin, "plain", [hs.bot, solo], encrypted=False)
    one = await make_room(admin, "encrypted, 1 device", [hs.bot, solo], encrypted=True)
    fifty = await make_room(admin, "encrypted, 50 devices", [hs.bot, *many], encrypted=True)
    fifty_again = await make_room(admin, "encrypted, 50 devices, again", [hs.bot, *many], encrypted=True)
    assert len(devices) == MEMBERS * DEVICES_EACH

    service = bridge(directory, "notify")
    service.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
    try:
        service.wait_ready()
        await delivery_rate(http, service, admin, hs, plain, "warm-up", encrypted=False, count=20)
        cold = await first_share(http, service, admin, hs, fifty, devices[-1])
        warm = await first_share(http, service, admin, hs, fifty_again, devices[0])
        await first_share(http, service, admin, hs, one, solo_device)
        runs: dict[str, tuple[str, bool]] = {
            "unencrypted": (plain, False),
            "encrypted, 1 device": (one, True),
            "encrypted, 50 devices": (fifty, True),
        }
        rates: dict[str, list[Delivery]] = {label: [] for label in runs}
        labels = list(runs)
        for round_number in range(ROUNDS):
            shift = round_number % len(labels)
            for label in labels[shift:] + labels[:shift]:
                room, encrypted = runs[label]
                rates[label].append(await delivery_rate(http, service, admin, hs, room, f"{label} {round_number}",
                                                        encrypted=encrypted))  # fmt: skip
        upload_to_key, post_to_key, triggers = await new_device_share(
            http, service, admin, hs, fifty, usernames[0]
        )
    finally:
        service.stop()
    rss_on = await idle_rss(http, hs, directory, admin, one, encryption=True)
    rss_off = await idle_rss(http, hs, directory, admin, plain, encryption=False)

    print(f"e2ee: notify into one room of a real Synapse, {MESSAGES} messages per run from the first POST to the"
          f" last one accepted by Synapse, {CONCURRENCY} POSTs in flight, best of {ROUNDS}; {os.cpu_count()} cores,"
          f" load {os.getloadavg()[0]:.1f}")  # fmt: skip
    best = {label: max(run.rate for run in values) for label, values in rates.items()}
    base = best["unencrypted"]
    targets = {"encrypted, 1 device": " (target >= 0.8x)"}
    for label, values in rates.items():
        ratio = (
            ""
            if label == "unencrypted"
            else f"  {best[label] / base:.2f}x unencrypted{targets.get(label, '')}"
        )
        runs_text = ", ".join(f"{run.rate:.0f}" for run in values)
        print(f"  {label:22}: {best[label]:6.1f} msg/s (runs {runs_text}){ratio}")
    # CPU per message moves less than rates on a shared machine: where the work goes.
    print("  CPU per message (median of the runs), bridge / Synapse:")
    for label, values in rates.items():
        bridge_ms = statistics.median(run.bridge_ms for run in values)
        synapse_ms = statistics.median(run.synapse_ms for run in values)
        print(f"    {label:22}: {bridge_ms:5.2f} ms / {synapse_ms:5.2f} ms")
    print("room key sharing (Olm to-device from the bot's device)")
    print(f"  first message into a fresh encrypted room, 50 devices, no Olm sessions yet: POST -> event in room"
          f" {cold[0]:.2f} s, -> room key at a device {cold[1]:.2f} s (target < 2 s)")  # fmt: skip
    print(f"  the same into another room, Olm sessions with the 50 devices already made: {warm[0]:.2f} s,"
          f" {warm[1]:.2f} s")  # fmt: skip
    # The bot shares the keys in use with a member's new device as soon as its /sync shows the
    # device: the key is usually there before the triggering message is posted.
    when = (
        f"before the triggering POST ({-post_to_key:.2f} s)"
        if post_to_key < 0
        else f"{post_to_key:.2f} s after the triggering POST ({triggers} message{'s' if triggers > 1 else ''})"
    )
    print(f"  a member's new device in the 50-device room: key upload -> room key {upload_to_key:.2f} s,"
          f" {when}")  # fmt: skip
    print(f"idle RSS of notify {IDLE:.0f} s after starting and sending one message")
    print(f"  encryption on : {rss_on:6.1f} MiB (target < 100 MiB)")
    print(f"  encryption off: {rss_off:6.1f} MiB (on/off {rss_on / rss_off:.2f}x)")
