"""Reaction → silence: Alertmanager notifies both bots of a new alert, the room's creator reacts 🔕 on
each bot's message for it (plain client-server calls: the room is unencrypted), and the time from
sending the reaction to the silence showing in Alertmanager's `GET /api/v2/silences` is taken, one
bot at a time, the order alternating between trials."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx

from bench.alertbot import one_alert
from devstack.alertmanager import LocalAlertmanager
from devstack.synapse import Account

REACTION = "🔕"  # in both bots' default reactions
SETTLE = 1.0  # seconds before a reaction: the other bot's answer to the last one is over by then


async def until(check: Callable[[], Awaitable[Any]], timeout: float, pause: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{check} stayed false for {timeout:g} s")
        await asyncio.sleep(pause)
    return value


async def first_message(reader: Account, room: str, sender: str, name: str) -> str | None:
    """The event id of `sender`'s first message naming the alert."""
    for event in await reader.messages(room):
        if event.get("sender") == sender and name in json.dumps(event.get("content", {}), ensure_ascii=False):
            return str(event["event_id"])
    return None


async def silenced(
    http: httpx.AsyncClient, alertmanager: LocalAlertmanager, name: str, seen: set[str]
) -> str | None:
    """The id of a silence for alert `name` not in `seen`."""
    for silence in (await http.get(f"{alertmanager.url}/api/v2/silences")).json():
        matchers = {(m["name"], m["value"]) for m in silence["matchers"]}
        if ("alertname", name) in matchers and silence["id"] not in seen:
            return str(silence["id"])
    return None


async def react_and_time(
    reactor: Account, room: str, event_id: str, http: httpx.AsyncClient, alertmanager: LocalAlertmanager,
    name: str, seen: set[str],
) -> float:  # fmt: skip
    relation = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": REACTION}}
    start = time.monotonic()
    await reactor.api("PUT", f"/rooms/{quote(room, safe='')}/send/m.reaction/{uuid.uuid4().hex}", relation)
    made = await until(partial(silenced, http, alertmanager, name, seen), timeout=60, pause=0.01)
    seen.add(made)
    return time.monotonic() - start


async def silence_latencies(
    alertmanager: LocalAlertmanager, reactor: Account, room: str, senders: dict[str, str], trials: int
) -> dict[str, list[float]]:
    """Seconds from reaction to silence for each bot (label -> sender), `trials` alerts."""
    latencies: dict[str, list[float]] = {label: [] for label in senders}
    seen: set[str] = set()
    async with httpx.AsyncClient(timeout=10) as http:
        for trial in range(trials):
            name = f"BenchSilence{trial}"
            alert = one_alert(name, trial)
            posted = {k: alert[k] for k in ("labels", "annotations", "generatorURL")}
            await asyncio.to_thread(alertmanager.post_alerts, [posted])
            events = {}
            for label, sender in senders.items():  # both have it once Alertmanager's group_wait is over
                events[label] = await until(
                    partial(first_message, reactor, room, sender, name), timeout=60, pause=0.3
                )
            order = list(senders) if trial % 2 == 0 else list(reversed(senders))
            for label in order:
                await asyncio.sleep(SETTLE)
                latencies[label].append(
                    await react_and_time(reactor, room, events[label], http, alertmanager, name, seen)
                )
    return latencies
