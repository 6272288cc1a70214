"""slack-webhook's app in-process: Slack's refusals, and what a payload becomes in Matrix."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from matrix_stack.services.slack_webhook.app import not_durable, routes
from matrix_stack.services.slack_webhook.config import SlackWebhookSettings
from tests.unit.inprocess import DATA, Bridge, bot, bridge

HOOK = "hook-main-0123456789abcdefgh"
BEARER_HOOK = "hook-bearer-0123456789abcdefg"
LIMITED_HOOK = "hook-limited-0123456789abcdef"
BEARER = "bearer-secret-value-0123"
JSON = {"Content-Type": "application/json"}
ROOMS = {HOOK: "!main:example.org", BEARER_HOOK: "!ci:example.org", LIMITED_HOOK: "!limited:example.org"}


@pytest.fixture
async def slack(tmp_path: Path) -> AsyncIterator[Bridge]:
    hooks = [
        {"id": HOOK, "room": ROOMS[HOOK], "name": "main", "users": {"U012AB3CD": "@reader:example.org"}},
        {"id": BEARER_HOOK, "room": ROOMS[BEARER_HOOK], "bearer_token": BEARER, "display_name": "CI",
         "msgtype": "m.text"},
        {"id": LIMITED_HOOK, "room": ROOMS[LIMITED_HOOK], "rate_limit": 0.5, "burst": 2},
    ]  # fmt: skip
    settings = SlackWebhookSettings(**bot(tmp_path), hooks=hooks)
    async with bridge(settings, routes, not_durable=not_durable) as running:
        yield running


async def test_refusals_are_slacks_and_store_nothing(slack: Bridge) -> None:
    http, url = slack.http, f"/hooks/{HOOK}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        (await http.post("/hooks/unknown-hook-0123456789abc", json={"text": "x"}), 404, "no_service"),
        (await http.post(f"/hooks/{BEARER_HOOK}", json={"text": "x"}), 403, "invalid_token"),
        (await http.post(f"/hooks/{BEARER_HOOK}", json={"text": "x"}, headers={"Authorization": "Bearer no"}),
         403, "invalid_token"),
        (await http.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400,
         "invalid_payload"),
        (await http.post(url, json=["a", "list"]), 400, "invalid_payload"),
        (await http.post(url, json={"text": 42}), 400, "invalid_payload"),
        (await http.post(url, content=b"\xff\xfe{}"), 400, "invalid_payload"),
        (await http.post(url, content="text=x", headers=form), 400, "invalid_payload"),
        (await http.post(url, json={"text": ""}), 400, "no_text"),
        (await http.post(url, json={"attachments": [{"text": "x"}] * 101}), 400, "too_many_attachments"),
    ]  # fmt: skip
    for response, status, code in cases:
        assert (response.status_code, response.text) == (status, code)
        assert response.headers["content-type"].startswith("text/html")
    assert (await http.get(url)).status_code == 405
    assert slack.service.outbox.depth == 0


@pytest.mark.parametrize(
    ("sample", "body", "formatted"),
    [
        ("slack_text.json", "Hello, world.", "Hello, world."),
        (
            "slack_attachment_fields.json",
            "Build bla bla succeeded\n🟢 Requested by: Some user · Duration: 00:02:03\n"
            "Build pipeline: ConsumerAddressModule · Title without value\nValue without title",
            "Build bla bla succeeded<blockquote>🟢 <strong>Requested by</strong>: Some user · "
            "<strong>Duration</strong>: 00:02:03<br><strong>Build pipeline</strong>: ConsumerAddressModule · "
            "<strong>Title without value</strong><br>Value without title</blockquote>",
        ),
    ],
)
async def test_samples_become_notices(slack: Bridge, sample: str, body: str, formatted: str) -> None:
    raw = (DATA / "slack" / sample).read_bytes()
    answer = await slack.http.post(f"/hooks/{HOOK}", content=raw, headers=JSON)
    assert (answer.status_code, answer.text) == (200, "ok")
    [sent] = await slack.matrix.wait_for(1)
    assert (sent.room, sent.event_type) == (ROOMS[HOOK], "m.room.message")
    assert sent.content == {
        "msgtype": "m.notice",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": formatted,
        "m.mentions": {},
    }


async def test_mentions_display_name_and_link_previews(slack: Bridge) -> None:
    mention = await slack.http.post(f"/services/T000/B000/{HOOK}", json={
        "text": "<@U012AB3CD> see <https://example.org|this>", "unfurl_links": False, "unfurl_media": False})  # fmt: skip
    assert mention.text == "ok"
    form = "payload=" + json.dumps({"text": "build *green*"})
    named = await slack.http.post(f"/hooks/{BEARER_HOOK}", content=form, headers={
        "Authorization": f"Bearer {BEARER}", "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert named.text == "ok"
    first, second = sorted(await slack.matrix.wait_for(2), key=lambda sent: sent.room != ROOMS[HOOK])
    assert first.content["body"] == "@reader:example.org see this (https://example.org)"
    assert first.content["m.mentions"] == {"user_ids": ["@reader:example.org"]}
    assert first.content["com.beeper.linkpreviews"] == []
    assert (second.room, second.content["msgtype"]) == (ROOMS[BEARER_HOOK], "m.text")
    assert second.content["body"] == "CI: build green"
    assert second.content["formatted_body"] == "<strong>CI</strong>: build <strong>green</strong>"
    assert "com.beeper.linkpreviews" not in second.content


async def test_rate_limit(slack: Bridge) -> None:
    answers = [await slack.http.post(f"/hooks/{LIMITED_HOOK}", json={"text": f"burst {i}"}) for i in range(3)]
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok"), (200, "ok"), (429, "rate_limited")]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert [sent.content["body"] for sent in await slack.matrix.wait_for(2)] == ["burst 0", "burst 1"]
