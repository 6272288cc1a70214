"""sentry-webhook's formatting in-process: each sample as the notice the outbox would send to its
project's, metric alert's or the default room, and injected markup shown as text (one sample's round
trip through the service and a real Synapse room: tests/integration/test_sentry_webhook.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from matrix_stack.services.sentry_webhook.app import not_durable, routes
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from tests.unit.inert import assert_inert
from tests.unit.inprocess import DATA as SAMPLE_DATA
from tests.unit.inprocess import Bridge, bot, bridge

DATA = SAMPLE_DATA / "sentry"
SECRET = "sentry-client-secret-0123456789abcdef"
LEGACY = "legacy-secret-0123456789"
ROOMS = {
    "default": "!default:localhost",
    "front-end": "!front-end:localhost",
    "metrics": "!metrics:localhost",
}


def sign(raw: bytes, secret: str = SECRET) -> str:
    """Exactly what Sentry does: hex HMAC-SHA256 of the body it sends."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class Sentry:
    """The integration tier's settings (secrets, rooms by project and metric alert rule) on the app
    in-process; the messages are the events the outbox sends, shaped as a reader reads them."""

    running: Bridge
    url: str = ""
    seen: int = 0

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
        sent = await self.running.matrix.wait_for(self.seen + count)
        assert len(sent) == self.seen + count
        new, self.seen = sent[self.seen :], len(sent)
        assert [event.room for event in new] == [ROOMS[room]] * count
        return [
            {"event_id": event.event_id, "type": event.event_type, "content": event.content} for event in new
        ]


@pytest.fixture
async def sentry(tmp_path: Path) -> AsyncIterator[Sentry]:
    settings = SentryWebhookSettings(
        **bot(tmp_path), client_secret=SECRET, legacy_secret=LEGACY, default_room=ROOMS["default"],
        project_rooms={"front-end": ROOMS["front-end"]}, metric_alert_rooms={"Too many errors": ROOMS["metrics"]},
    )  # fmt: skip
    async with bridge(settings, routes, not_durable=not_durable) as running:
        yield Sentry(running)


@pytest.fixture
def http(sentry: Sentry) -> httpx.AsyncClient:
    return sentry.running.http


# sample -> (resource, room, body, formatted_body)
SAMPLES: dict[str, tuple[str, str, str, str]] = {
    "sentry_event_alert_triggered.json": (
        "event_alert",
        "front-end",
        "🔴 [ERROR] Alert: ReferenceError: heck is not defined\n?(<anonymous>)\nat <anonymous>:3\nproject: front-end\n"
        "handled: no · mechanism: onerror · browser: Chrome 75.0.3770 · os: Mac OS X 10.14.0 · url: https://null.jsbin.com/runner · user: ip:162.217.75.90\n"
        "rule: Very Important Alert Rule!\nhttps://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/",
        '🔴 <strong>[ERROR] Alert</strong>: <a href="https://sentry.io/organizations/test-org/issues/1117540176/events/e4874d664c3540c1a32eab185f12c5ab/">'
        "ReferenceError: heck is not defined</a><br><code>?(&lt;anonymous&gt;)</code><br>at <code>&lt;anonymous&gt;:3</code><br>"
        "<strong>project</strong>: front-end<br><strong>handled</strong>: no · <strong>mechanism</strong>: onerror · <strong>browser</strong>: Chrome 75.0.3770 · "
        "<strong>os</strong>: Mac OS X 10.14.0 · <strong>url</strong>: https://null.jsbin.com/runner · <strong>user</strong>: ip:162.217.75.90<br>"
        "<strong>rule</strong>: Very Important Alert Rule!",
    ),
    "sentry_issue_created.json": (
        "issue",
        "front-end",
        "🆕 [ERROR] New issue FRONT-END-9: ReferenceError: blooopy is not defined\n?(runner)\nproject: front-end · events: 1 · users: 1\n"
        "https://sentry.io/issues/1170820242/",
        '🆕 <strong>[ERROR] New issue FRONT-END-9</strong>: <a href="https://sentry.io/issues/1170820242/">ReferenceError: blooopy is not defined</a>'
        "<br><code>?(runner)</code><br><strong>project</strong>: front-end · <strong>events</strong>: 1 · <strong>users</strong>: 1",
    ),
    "sentry_error_created.json": (
        "error",
        "front-end",
        "🔴 [ERROR] Error: ReferenceError: blooopy is not defined\n?(runner)\nat /runner:3\nproject: front-end\n"
        "handled: no · mechanism: onerror · browser: Chrome 75.0.3770 · os: Mac OS X 10.14.0 · url: https://null.jsbin.com/runner · user: ip:162.217.75.90\n"
        "https://sentry.io/organizations/test-org/issues/1170820242/events/bb78c1407cea4519aa397afc059c793d/",
        '🔴 <strong>[ERROR] Error</strong>: <a href="https://sentry.io/organizations/test-org/issues/1170820242/events/bb78c1407cea4519aa397afc059c793d/">'
        "ReferenceError: blooopy is not defined</a><br><code>?(runner)</code><br>at <code>/runner:3</code><br><strong>project</strong>: front-end<br>"
        "<strong>handled</strong>: no · <strong>mechanism</strong>: onerror · <strong>browser</strong>: Chrome 75.0.3770 · <strong>os</strong>: Mac OS X 10.14.0 · "
        "<strong>url</strong>: https://null.jsbin.com/runner · <strong>user</strong>: ip:162.217.75.90",
    ),
    "sentry_issue_assigned_user.json": (
        "issue",
        "default",
        "👤 Assigned ZULIP-INTEGRATION-TESTING-G: A test message event from golang.\n"
        "project: zulip-integration-testing · assignee: Hemanth V. Alluri · by: Hemanth V. Alluri\nhttps://sentry.io/issues/1638844654/",
        '👤 <strong>Assigned ZULIP-INTEGRATION-TESTING-G</strong>: <a href="https://sentry.io/issues/1638844654/">A test message event from golang.</a>'
        "<br><strong>project</strong>: zulip-integration-testing · <strong>assignee</strong>: Hemanth V. Alluri · <strong>by</strong>: Hemanth V. Alluri",
    ),
    "sentry_issue_resolved.json": (
        "issue",
        "default",
        "✅ Resolved ZULIP-INTEGRATION-TESTING-E: Exception: program has entered an invalid state.\n__main__ in <module>\n"
        "project: zulip-integration-testing · resolution: now · by: Hemanth V. Alluri\nhttps://sentry.io/issues/1638821441/",
        '✅ <strong>Resolved ZULIP-INTEGRATION-TESTING-E</strong>: <a href="https://sentry.io/issues/1638821441/">Exception: program has entered an invalid state.</a>'
        "<br><code>__main__ in &lt;module&gt;</code><br><strong>project</strong>: zulip-integration-testing · <strong>resolution</strong>: now · "
        "<strong>by</strong>: Hemanth V. Alluri",
    ),
    "sentry_metric_alert_resolved.json": (
        "metric_alert",
        "metrics",
        "✅ Metric alert resolved: Resolved: Too many errors\n1000 events in the last 10 minutes\nFilter: level:error\n"
        "rule: Too many errors · projects: bar\nhttps://sentry.io/organizations/baz/alerts/1/",
        '✅ <strong>Metric alert resolved</strong>: <a href="https://sentry.io/organizations/baz/alerts/1/">Resolved: Too many errors</a>'
        "<br>1000 events in the last 10 minutes<br>Filter: level:error<br><strong>rule</strong>: Too many errors · <strong>projects</strong>: bar",
    ),
    "sentry_comment_created.json": (
        "comment",
        "default",
        "💬 colleen commented on issue 100\nadding a comment",
        '💬 <strong>colleen</strong> commented on <a href="https://sentry.io/issues/100/">issue 100</a><br><blockquote>adding a comment</blockquote>',
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


async def test_injection_is_inert(sentry: Sentry, http: httpx.AsyncClient) -> None:
    attack = '<img src=x onerror=alert(1)><script>alert(1)</script>"><a href="javascript:x">'
    event = json.loads((DATA / "sentry_event_alert_triggered.json").read_bytes())
    data = event["data"]["event"]
    for key in ("title", "culprit", "release", "environment"):
        data[key] = attack
    data["web_url"] = "javascript:alert(1)"
    data["tags"] = [["browser", attack], ["url", attack]]
    event["data"]["triggered_rule"] = attack
    response = await sentry.post("event_alert", json.dumps(event).encode(), http=http)
    assert response.status_code == 200
    [message] = await sentry.new_messages("front-end")
    assert_inert(message["content"]["formatted_body"])
    assert attack in message["content"]["body"]  # shown as text
