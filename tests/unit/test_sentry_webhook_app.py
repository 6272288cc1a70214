"""sentry-webhook's app in-process: Sentry's signature, its refusals, and what an issue becomes in
Matrix (the first message of an issue its thread's root, later ones in that thread)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from matrix_stack.services.sentry_webhook.app import not_durable, routes
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from tests.unit.inprocess import DATA, Bridge, bot, bridge

SECRET = "sentry-client-secret-0123456789abcdef"
LEGACY = "legacy-secret-0123456789"
SAMPLES = DATA / "sentry"
DEFAULT, FRONT_END = "!default:example.org", "!front-end:example.org"


def sign(raw: bytes, secret: str = SECRET) -> str:
    """Exactly what Sentry does: hex HMAC-SHA256 of the body it sends."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


async def post(
    http: httpx.AsyncClient, resource: str, raw: bytes, *, signature: str | None = None, request_id: str = ""
) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Sentry-Hook-Resource": resource, "Request-ID": request_id,
               "Sentry-Hook-Signature": sign(raw) if signature is None else signature}  # fmt: skip
    return await http.post("/sentry", content=raw, headers=headers)


@pytest.fixture
async def sentry(tmp_path: Path) -> AsyncIterator[Bridge]:
    settings = SentryWebhookSettings(
        **bot(tmp_path), client_secret=SECRET, legacy_secret=LEGACY, default_room=DEFAULT,
        project_rooms={"front-end": FRONT_END},
    )  # fmt: skip
    async with bridge(settings, routes, not_durable=not_durable) as running:
        yield running


async def test_refusals_store_nothing(sentry: Bridge) -> None:
    http = sentry.http
    raw = (SAMPLES / "sentry_issue_resolved.json").read_bytes()
    wrong = await post(http, "issue", raw, signature=sign(raw, "another-secret"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_signature")
    unsigned = await http.post("/sentry", content=raw, headers={"Sentry-Hook-Resource": "issue"})
    assert unsigned.status_code == 401
    reserialised = json.dumps(json.loads(raw)).encode()  # not the bytes that were signed
    assert (await post(http, "issue", reserialised, signature=sign(raw))).status_code == 401
    bad_json = await post(http, "issue", b'{"action": "created", ')
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "invalid_json")
    no_action = await post(http, "issue", b'{"data": {}}')
    assert (no_action.status_code, no_action.json()["error"]) == (400, "invalid_payload")
    assert no_action.json()["detail"] == "action: Field required"
    installation = await post(
        http, "installation", (SAMPLES / "sentry_installation_created.json").read_bytes()
    )
    assert installation.status_code == 202
    assert installation.json() == {"ok": True, "ignored": "installation.created"}
    empty = await post(http, "issue", b"")
    assert (empty.status_code, empty.json()) == (200, {"ok": True, "detail": "empty body"})
    assert (await http.post("/legacy/wrong-secret-00000", json={})).status_code == 401
    assert (await http.post("/legacy", json={})).json()["error"] == "invalid_secret"
    listed = await http.post(f"/legacy/{LEGACY}", json=[])
    assert (listed.status_code, listed.json()["error"]) == (400, "invalid_payload")
    assert sentry.service.outbox.depth == 0


async def test_an_alert_becomes_a_notice_in_its_projects_room(sentry: Bridge) -> None:
    raw = (SAMPLES / "sentry_event_alert_triggered.json").read_bytes()
    answer = await post(sentry.http, "event_alert", raw)
    assert answer.status_code == 200
    [sent] = await sentry.matrix.wait_for(1)
    assert (sent.room, sent.content["msgtype"], sent.content["m.mentions"]) == (FRONT_END, "m.notice", {})
    assert sent.content["body"].startswith("🔴 [ERROR] Alert: ReferenceError: heck is not defined\n")
    assert sent.content["formatted_body"].startswith(
        '🔴 <strong>[ERROR] Alert</strong>: <a href="https://sentry.io/organizations/test-org/issues/1117540176/'
    )
    assert "m.relates_to" not in sent.content


async def test_an_issue_is_a_thread_and_a_redelivery_is_one_message(sentry: Bridge) -> None:
    created = json.loads((SAMPLES / "sentry_issue_created.json").read_bytes())
    raw = json.dumps(created).encode()
    first = await post(sentry.http, "issue", raw, request_id="req-1")
    again = await post(sentry.http, "issue", raw, request_id="req-1")  # Sentry retrying: same request id
    assert first.json()["delivery_id"] == again.json()["delivery_id"] == "sentry:req-1"
    resolved = {**created, "action": "resolved", "data": {**created["data"], "resolution_type": "now"}}
    assert (await post(sentry.http, "issue", json.dumps(resolved).encode())).status_code == 200
    root, reply = await sentry.matrix.wait_for(2)
    assert root.content["body"].startswith("🆕 [ERROR] New issue FRONT-END-9: ReferenceError: blooopy")
    assert "m.relates_to" not in root.content
    assert reply.room == root.room == FRONT_END
    assert reply.content["body"].startswith("✅ Resolved FRONT-END-9")
    assert reply.content["m.relates_to"] == {
        "rel_type": "m.thread", "event_id": root.event_id, "is_falling_back": True,
        "m.in_reply_to": {"event_id": root.event_id},
    }  # fmt: skip
    assert len(sentry.matrix.sent) == 2
