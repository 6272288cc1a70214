"""sentry-webhook over HTTP with Sentry's real signing, read back from a real Synapse room."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.integration.conftest import PASSWORD

DATA = Path(__file__).parent.parent / "data" / "sentry"
SECRET = "sentry-client-secret-0123456789abcdef"
LEGACY = "legacy-secret-0123456789"


def sign(raw: bytes, secret: str = SECRET) -> str:
    """Exactly what Sentry does: hex HMAC-SHA256 of the body it sends."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class Sentry:
    url: str
    rooms: dict[str, str]
    reader: Account
    seen: dict[str, int] = field(default_factory=dict)

    async def post(
        self,
        resource: str,
        raw: bytes,
        *,
        signature: str | None = None,
        request_id: str | None = None,
        header: str = "Sentry-Hook-Signature",
        http: httpx.AsyncClient,
    ) -> httpx.Response:
        headers = {
            "Content-Type": "application/json",
            "Sentry-Hook-Resource": resource,
            "Request-ID": request_id or uuid.uuid4().hex,
            "Sentry-Hook-Timestamp": "1662377141",
            header: signature if signature is not None else sign(raw),
        }
        return await http.post(f"{self.url}/sentry", content=raw, headers=headers)

    async def new_messages(self, room: str, count: int = 1) -> list[dict[str, Any]]:
        room_id = self.rooms[room]
        before = self.seen.get(room_id, 0)
        events = await self.reader.wait_for_messages(room_id, before + count)
        self.seen[room_id] = len(events)
        assert len(events) == before + count
        return events[before:]

    async def nothing_new(self, room: str) -> None:
        await asyncio.sleep(1.0)
        room_id = self.rooms[room]
        assert len(await self.reader.messages(room_id)) == self.seen.get(room_id, 0)


@pytest.fixture(scope="module")
async def sentry(
    synapse: LocalSynapse, bot: Account, reader: Account, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Sentry]:
    rooms = {
        name: await reader.create_room(name=f"sentry {name}", invite=[bot.user_id])
        for name in ("default", "front-end", "metrics")
    }
    directory = tmp_path_factory.mktemp("sentry")
    service = LocalService(
        "sentry-webhook", "matrix_stack.services.sentry_webhook", "SENTRY_WEBHOOK_", free_port(),
        {"CLIENT_SECRET": SECRET, "LEGACY_SECRET": LEGACY, "DEFAULT_ROOM": rooms["default"],
         "PROJECT_ROOMS": json.dumps({"front-end": rooms["front-end"]}),
         "METRIC_ALERT_ROOMS": json.dumps({"Too many errors": rooms["metrics"]}), "LOG_JSON": "true"},
        directory / "data",
    )  # fmt: skip
    service.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
    service.wait_ready()
    yield Sentry(service.url, rooms, reader)
    service.stop()


# sample -> (resource, room, body, formatted_body): one sample's round trip proves the wiring (every
# sample and the injection check, in-process: tests/unit/test_sentry_webhook_samples.py).
SAMPLES: dict[str, tuple[str, str, str, str]] = {
    "sentry_metric_alert_resolved.json": (
        "metric_alert",
        "metrics",
        "✅ Metric alert resolved: Resolved: Too many errors\n1000 events in the last 10 minutes\nFilter: level:error\n"
        "rule: Too many errors · projects: bar\nhttps://sentry.io/organizations/baz/alerts/1/",
        '✅ <strong>Metric alert resolved</strong>: <a href="https://sentry.io/organizations/baz/alerts/1/">Resolved: Too many errors</a>'
        "<br>1000 events in the last 10 minutes<br>Filter: level:error<br><strong>rule</strong>: Too many errors · <strong>projects</strong>: bar",
    ),
}


@pytest.mark.parametrize("sample", list(SAMPLES))
async def test_samples(sentry: Sentry, http: httpx.AsyncClient, sample: str) -> None:
    resource, room, body, formatted = SAMPLES[sample]
    raw = (DATA / sample).read_bytes()
    response = await sentry.post(resource, raw, http=http)
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True
    [event] = await sentry.new_messages(room)
    assert event["content"]["body"] == body
    assert event["content"]["formatted_body"] == formatted
    assert event["content"]["msgtype"] == "m.notice"
    assert event["content"]["m.mentions"] == {}


async def test_installation_is_acknowledged_only(sentry: Sentry, http: httpx.AsyncClient) -> None:
    response = await sentry.post(
        "installation", (DATA / "sentry_installation_created.json").read_bytes(), http=http
    )
    assert (response.status_code, response.json()["ignored"]) == (202, "installation.created")
    await sentry.nothing_new("default")


async def test_rejections_deliver_nothing(sentry: Sentry, http: httpx.AsyncClient) -> None:
    raw = (DATA / "sentry_issue_resolved.json").read_bytes()
    wrong = await sentry.post("issue", raw, signature=sign(raw, "another-secret"), http=http)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_signature")
    missing = await http.post(f"{sentry.url}/sentry", content=raw, headers={"Sentry-Hook-Resource": "issue"})
    assert missing.status_code == 401
    reserialised = json.dumps(json.loads(raw)).encode()  # what the reference image signed: not the bytes sent
    assert reserialised != raw
    assert (await sentry.post("issue", reserialised, signature=sign(raw), http=http)).status_code == 401
    malformed = b'{"action": "created", '
    bad_json = await sentry.post("issue", malformed, http=http)
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "invalid_json")
    no_action = await sentry.post("issue", b'{"data": {}}', http=http)
    assert (no_action.status_code, no_action.json()["error"]) == (400, "invalid_payload")
    big = b'{"action": "created", "data": {"x": "' + b"x" * (1024 * 1024) + b'"}}'
    assert (await sentry.post("issue", big, http=http)).status_code == 413
    unknown = await sentry.post("seer", b'{"action": "completed", "data": {}}', http=http)
    assert (unknown.status_code, unknown.json()["ignored"]) == (202, "seer.completed")
    odd_action = await sentry.post("issue", b'{"action": "bookmarked", "data": {}}', http=http)
    assert odd_action.status_code == 202
    empty = await sentry.post("issue", b"", http=http)
    assert (empty.status_code, empty.json()["detail"]) == (200, "empty body")
    await sentry.nothing_new("default")
    await sentry.nothing_new("front-end")


async def test_duplicates_are_dropped(sentry: Sentry, http: httpx.AsyncClient) -> None:
    raw = (DATA / "sentry_issue_assigned_user.json").read_bytes().replace(b"1638844654", b"777000777")
    request_id = uuid.uuid4().hex
    first = await sentry.post("issue", raw, request_id=request_id, http=http)
    assert first.status_code == 200
    await sentry.new_messages("default")
    again = await sentry.post("issue", raw, request_id=request_id, http=http, header="sentry-app-signature")
    assert again.status_code == 200
    assert again.json()["delivery_id"] == first.json()["delivery_id"]
    # Sentry sending issue.ignored and issue.archived for one change: one message.
    archived = json.loads(raw)
    archived["action"] = "archived"
    archived["data"]["issue"]["substatus"] = "archived_until_escalating"
    archived_raw = json.dumps(archived).encode()
    assert (await sentry.post("issue", archived_raw, http=http)).status_code == 200
    ignored_raw = archived_raw.replace(b'"archived"', b'"ignored"')
    duplicate = await sentry.post("issue", ignored_raw, http=http)
    assert duplicate.json()["duplicate"]
    [event] = await sentry.new_messages("default")
    assert event["content"]["body"].startswith("💤 Archived ZULIP-INTEGRATION-TESTING-G")
    assert "until: until escalating" in event["content"]["body"]
    await sentry.nothing_new("default")


async def test_issue_thread(sentry: Sentry, http: httpx.AsyncClient) -> None:
    created = json.loads((DATA / "sentry_issue_created.json").read_bytes())
    created["data"]["issue"]["id"] = "424242"
    assert (await sentry.post("issue", json.dumps(created).encode(), http=http)).status_code == 200
    [root] = await sentry.new_messages("front-end")
    resolved = {**created, "action": "resolved", "data": {**created["data"], "resolution_type": "now"}}
    assert (await sentry.post("issue", json.dumps(resolved).encode(), http=http)).status_code == 200
    [reply] = await sentry.new_messages("front-end")
    assert reply["content"]["body"].startswith("✅ Resolved FRONT-END-9")
    assert reply["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert reply["content"]["m.relates_to"]["event_id"] == root["event_id"]


async def test_legacy_plugin(sentry: Sentry, http: httpx.AsyncClient) -> None:
    event = json.loads((DATA / "sentry_event_alert_triggered.json").read_bytes())["data"]["event"]
    payload = {
        "id": "1117540176",
        "project": "front-end",
        "project_name": "Front End",
        "project_slug": "front-end",
        "logger": None,
        "level": "warning",
        "culprit": "?(<anonymous>)",
        "message": "heck is not defined",
        "url": "https://sentry.io/organizations/test-org/issues/1117540176/?referrer=webhooks_plugin",
        "triggering_rules": ["Legacy rule"],
        "event": {**event, "environment": "production"},
    }
    assert (await http.post(f"{sentry.url}/legacy/wrong-secret-00000", json=payload)).status_code == 401
    assert (await http.post(f"{sentry.url}/legacy", json=payload)).status_code == 401
    response = await http.post(f"{sentry.url}/legacy/{LEGACY}", json=payload)
    assert response.status_code == 200
    [message] = await sentry.new_messages("front-end")
    assert message["content"]["body"].startswith("🟠 [WARNING] Sentry: ReferenceError: heck is not defined\n")
    assert "project: front-end · environment: production" in message["content"]["body"]
    assert "rule: Legacy rule" in message["content"]["body"]
    response = await http.post(f"{sentry.url}/legacy?secret={LEGACY}", json=payload)
    assert response.status_code == 200
    await sentry.new_messages("front-end")
