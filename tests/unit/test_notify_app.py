"""notify's app in-process: what it refuses, and what a message it takes becomes in Matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from matrix_stack.services.notify.app import routes
from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.shared.outbox.engine import txn_id_for
from tests.unit.inprocess import Bridge, bot, bridge

TOKEN = "notify-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROOM = "!ops:example.org"


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[Bridge]:
    settings = NotifySettings(
        **bot(tmp_path), token=TOKEN, rooms=[ROOM, "#alerts:example.org"], max_body_bytes=2048
    )
    async with bridge(settings, routes) as running:
        yield running


async def test_ready_on_its_outbox(notify: Bridge) -> None:
    ready = await notify.http.get("/readyz")
    assert ready.json() == {"status": "ready", "outbox_depth": 0, "outbox_backend": "sqlite"}
    assert (await notify.http.get("/healthz")).status_code == 200


async def test_refusals_store_nothing(notify: Bridge) -> None:
    http, url = notify.http, f"/notify/{ROOM}"
    json_type = {**AUTH, "Content-Type": "application/json"}
    cases = [
        (await http.post(url, content="x"), 401, "unauthorized"),
        (await http.post(url, content="x", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"),
        (await http.post(url, content="x" * 3000, headers=AUTH), 413, "payload_too_large"),
        (await http.post(url, content=b"{bad", headers=json_type), 400, "invalid_json"),
        (await http.post(url, json={"text": "x", "extra": 1}, headers=AUTH), 400, "invalid_payload"),
        (await http.post(url, json={}, headers=AUTH), 400, "invalid_payload"),
        (await http.post(url, content=b"\xff\xfe", headers=AUTH), 400, "invalid_encoding"),
        (await http.post(url, content="<x/>", headers={**AUTH, "Content-Type": "application/xml"}), 415,
         "unsupported_media_type"),
        (await http.post("/notify", content="x", headers=AUTH), 404, "no_room"),
        (await http.post("/notify/!elsewhere:example.org", content="x", headers=AUTH), 403, "room_not_allowed"),
        (await http.get("/deliveries/nope"), 401, "unauthorized"),
        (await http.get("/deliveries/nope", headers=AUTH), 404, "unknown_delivery"),
    ]  # fmt: skip
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]) == (status, code), response.text
    assert notify.service.outbox.depth == 0
    assert (await notify.http.get("/readyz")).json()["outbox_depth"] == 0


async def test_text_and_html_become_notices(notify: Bridge) -> None:
    plain = await notify.http.post(f"/notify/{ROOM}", content="disk <full>", headers=AUTH)
    assert plain.status_code == 202
    html = await notify.http.post(
        "/notify/%23alerts:example.org",  # an alias, escaped in the path
        json={"html": "<b>up</b> <script>x()</script>again", "msgtype": "m.text"},
        headers=AUTH,
    )
    assert html.status_code == 202
    first, second = await notify.matrix.wait_for(2)
    assert (first.room, first.event_type) == (ROOM, "m.room.message")
    assert first.content == {"msgtype": "m.notice", "body": "disk <full>", "m.mentions": {}}
    assert first.txn_id == txn_id_for(plain.json()["delivery_id"])
    assert second.room == "#alerts:example.org"
    assert second.content == {
        "msgtype": "m.text",
        "body": "up again",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>up</b> again",  # the script dropped, its text too
        "m.mentions": {},
    }
    status = await notify.http.get(f"/deliveries/{plain.json()['delivery_id']}", headers=AUTH)
    assert status.json() | {"id": None} == {
        "id": None, "room": ROOM, "state": "sent", "attempts": 1, "event_id": first.event_id, "error": None,
    }  # fmt: skip
