"""slack-webhook's rendering in-process: the payload samples, mrkdwn, the body encodings, injected
markup, nulls and fuzzed payloads, each checked as the event the outbox would send (one sample's
round trip through the service and a real Synapse room: tests/integration/test_slack_webhook.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matrix_stack.services.slack_webhook.app import not_durable, routes
from matrix_stack.services.slack_webhook.config import SlackWebhookSettings
from tests.unit.inert import assert_inert
from tests.unit.inprocess import DATA as SAMPLES_DIR
from tests.unit.inprocess import Bridge, bot, bridge

DATA = SAMPLES_DIR / "slack"
HOOK = "hook-main-0123456789abcdefgh"
FUZZ_HOOK = "hook-fuzz-0123456789abcdefghi"
ROOMS = {HOOK: "!main:localhost", FUZZ_HOOK: "!fuzz:localhost"}

# What each sample must become, byte for byte, in the room.
SAMPLES = {
    "slack_text.json": ("Hello, world.", "Hello, world."),
    "slack_attachment_fields.json": (
        "Build bla bla succeeded\n🟢 Requested by: Some user · Duration: 00:02:03\n"
        "Build pipeline: ConsumerAddressModule · Title without value\nValue without title",
        "Build bla bla succeeded<blockquote>🟢 <strong>Requested by</strong>: Some user · "
        "<strong>Duration</strong>: 00:02:03<br><strong>Build pipeline</strong>: ConsumerAddressModule · "
        "<strong>Title without value</strong><br>Value without title</blockquote>",
    ),
    "slack_attachment_blocks.json": (
        "This is a section block with an accessory image.\n🖼 cute cat "
        "(https://pbs.twimg.com/profile_images/625633822235693056/lNGUneLX_400x400.jpg)\n"
        "This is a section block with a button.\none\ntwo\nthree\nfour\nfive",
        "<blockquote>This is a section block with an accessory image.<br>"
        '<a href="https://pbs.twimg.com/profile_images/625633822235693056/lNGUneLX_400x400.jpg">🖼 cute cat</a>'
        "<br>This is a section block with a button.<br>one<br>two<br>three<br>four<br>five</blockquote>",
    ),
    "slack_blocks_review.json": (
        "Danny Torrence left the following review for your property:\nOverlook Hotel (https://example.com) \n"
        " ⭐ \n Doors had too many axe holes, guest in room 237 was far too rowdy, whole place felt stuck in "
        "the 1920s.\n🖼 Haunted hotel image (https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/"
        "d3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg)\nAverage Rating\n1.0",
        "Danny Torrence left the following review for your property:<br>"
        '<a href="https://example.com">Overlook Hotel</a> <br> ⭐ <br> Doors had too many axe holes, guest in '
        "room 237 was far too rowdy, whole place felt stuck in the 1920s.<br>"
        '<a href="https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/'
        'd3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg">🖼 Haunted hotel image</a><br>'
        "<strong>Average Rating</strong><br>1.0",
    ),
    "slack_blocks_actions.json": (
        "Danny Torrence left the following review for your property:\nOverlook Hotel (https://google.com) \n"
        " ⭐ \n Doors had too many axe holes, guest in room 237 was far too rowdy, whole place felt stuck in "
        "the 1920s.\n🖼 Haunted hotel image (https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/"
        "d3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg)\nAverage Rating\n1.0",
        "Danny Torrence left the following <em>review</em> for your property:<br>"
        '<a href="https://google.com">Overlook Hotel</a> <br> ⭐ <br> Doors had too many axe holes, guest in '
        "room 237 was far too rowdy, whole place felt stuck in the 1920s.<br>"
        '<a href="https://is5-ssl.mzstatic.com/image/thumb/Purple3/v4/d3/72/5c/'
        'd3725c8f-c642-5d69-1904-aa36e4297885/source/256x256bb.jpg">🖼 Haunted hotel image</a><br>'
        "<strong>Average Rating</strong><br>1.0",
    ),
}


@dataclass
class SlackService:
    """The integration tier's hooks (same ids, names, users) on the app in-process; messages are
    what the outbox sends, in the hook's room."""

    running: Bridge
    seen: int = 0

    @staticmethod
    def hook_url(hook: str = HOOK) -> str:
        return f"/hooks/{hook}"

    async def last_message(self, hook: str = HOOK) -> dict[str, Any]:
        sent = await self.running.matrix.wait_for(self.seen + 1)
        assert len(sent) == self.seen + 1, "expected exactly one new message"
        self.seen = len(sent)
        assert (sent[-1].room, sent[-1].event_type) == (ROOMS[hook], "m.room.message")
        return sent[-1].content


@pytest.fixture
async def slack_service(tmp_path: Path) -> AsyncIterator[SlackService]:
    hooks = [
        {"id": HOOK, "room": ROOMS[HOOK], "name": "main", "users": {"U012AB3CD": "@reader:localhost"}},
        {"id": FUZZ_HOOK, "room": ROOMS[FUZZ_HOOK]},
    ]
    settings = SlackWebhookSettings(**bot(tmp_path), hooks=hooks)
    async with bridge(settings, routes, not_durable=not_durable) as running:
        yield SlackService(running)


@pytest.fixture
def http(slack_service: SlackService) -> httpx.AsyncClient:
    return slack_service.running.http


@pytest.mark.parametrize("sample", sorted(SAMPLES))
async def test_samples_arrive_exactly(
    slack_service: SlackService, http: httpx.AsyncClient, sample: str
) -> None:
    response = await http.post(
        slack_service.hook_url(),
        content=(DATA / sample).read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["content-type"].startswith("text/html")
    content = await slack_service.last_message()
    body, formatted = SAMPLES[sample]
    assert content["body"] == body
    assert content["formatted_body"] == formatted
    assert content["format"] == "org.matrix.custom.html"
    assert content["msgtype"] == "m.notice"
    assert content["m.mentions"] == {}


async def test_mrkdwn_alertmanager_style(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    payload = {
        "channel": "#alerts",
        "username": "Alertmanager",
        "attachments": [{
            "title": '[FIRING:2] InstanceDown for api-server (env="prod", severity="critical")',
            "title_link": "http://alertmanager.local/#/alerts?receiver=slack",
            "color": "danger",
            "mrkdwn_in": ["fallback", "pretext", "text"],
            "fallback": "[FIRING:2] InstanceDown | http://alertmanager.local",
            "text": ":chart_with_upwards_trend: *<http://generator.local/1|Graph>*   :notebook: "
                    "*<https://runbook.local/1|Runbook>*\n\n*Alert details*:\n*Alert:* api-server down - "
                    "`critical`\n  • *alertname:* `InstanceDown`\n<@U012AB3CD> &lt;please look&gt; ~old~ _now_",
            "footer": "prometheus", "ts": 1656456506,
        }],
    }  # fmt: skip
    response = await http.post(slack_service.hook_url(), json=payload)
    assert response.text == "ok"
    content = await slack_service.last_message()
    assert content["body"] == (
        'Alertmanager: 🔴 [FIRING:2] InstanceDown for api-server (env="prod", severity="critical") '
        "(http://alertmanager.local/#/alerts?receiver=slack)\n"
        "📈 Graph (http://generator.local/1)   📓 Runbook (https://runbook.local/1)\n\nAlert details:\n"
        "Alert: api-server down - `critical`\n  • alertname: `InstanceDown`\n@reader:localhost <please look> old now\n"
        "prometheus · 2022-06-28 22:48:26 UTC"
    )
    assert content["formatted_body"] == (
        '<strong>Alertmanager</strong>: <blockquote>🔴 <font data-mx-color="#A30200"><strong>'
        '<a href="http://alertmanager.local/#/alerts?receiver=slack">[FIRING:2] InstanceDown for api-server '
        '(env="prod", severity="critical")</a></strong></font><br>📈 <strong>'
        '<a href="http://generator.local/1">Graph</a></strong>   📓 <strong><a href="https://runbook.local/1">'
        "Runbook</a></strong><br><br><strong>Alert details</strong>:<br><strong>Alert:</strong> api-server "
        "down - <code>critical</code><br>  • <strong>alertname:</strong> <code>InstanceDown</code><br>"
        '<a href="https://matrix.to/#/@reader:localhost">@reader:localhost</a> &lt;please look&gt; <del>old</del> '
        '<em>now</em><br><span data-mx-color="#888888">prometheus · 2022-06-28 22:48:26 UTC</span></blockquote>'
    )
    assert content["m.mentions"] == {"user_ids": ["@reader:localhost"]}


async def test_body_encodings(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    form = urlencode({"payload": json.dumps({"text": "from a *form*"})})
    response = await http.post(
        slack_service.hook_url(), content=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.text == "ok"
    assert (await slack_service.last_message())["formatted_body"] == "from a <strong>form</strong>"
    for content_type in ("text/plain", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await http.post(slack_service.hook_url(), content=b'{"text": "sniffed"}', headers=headers)
        assert response.text == "ok"
        assert (await slack_service.last_message())["body"] == "sniffed"
    slack_path = f"/services/T000/B000/{HOOK}"
    response = await http.post(
        slack_path, json={"text": "slack-shaped url", "unfurl_links": False, "unfurl_media": False}
    )
    assert response.text == "ok"
    content = await slack_service.last_message()
    assert content["body"] == "slack-shaped url"
    assert content["com.beeper.linkpreviews"] == []


INJECTIONS = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script>",
    '"><svg onload=alert(1)>',
    "javascript:alert(1)",
    '<a href="javascript:alert(1)">x</a>',
    "&lt;b onclick=x&gt;",
]


async def test_injection_is_inert(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    for attack in INJECTIONS:
        payload = {
            "text": attack, "username": attack,
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": attack}},
                {"type": "section", "text": {"type": "mrkdwn", "text": f"<{attack}|{attack}>"},
                 "fields": [{"type": "mrkdwn", "text": attack}],
                 "accessory": {"type": "image", "image_url": attack, "alt_text": attack}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": attack}]},
                {"type": "markdown", "text": f"{attack} [x]({attack})"},
                {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                    {"type": "text", "text": attack}, {"type": "link", "url": attack, "text": attack}]}]},
            ],
            "attachments": [{"title": attack, "title_link": attack, "text": attack, "pretext": attack,
                             "author_name": attack, "color": attack, "footer": attack,
                             "fields": [{"title": attack, "value": attack}], "image_url": attack}],
        }  # fmt: skip
        response = await http.post(slack_service.hook_url(FUZZ_HOOK), json=payload)
        assert response.text == "ok"
        content = await slack_service.last_message(FUZZ_HOOK)
        assert_inert(content["formatted_body"])
        assert "<" not in content["body"] or attack in content["body"]  # text only, never rendered HTML


async def test_private_use_characters_of_every_plane_are_dropped(
    slack_service: SlackService, http: httpx.AsyncClient
) -> None:
    # The renderer's placeholders are private-use characters: any in the input are removed first,
    # up to the last plane (U+10FFFF once made a 500).
    for character in ("\ue001", "\U000f0000", "\U000ffffe", "\U00100000", "\U0010ffff"):
        response = await http.post(slack_service.hook_url(FUZZ_HOOK), json={"text": f"a{character} *b*"})
        assert response.text == "ok"
        content = await slack_service.last_message(FUZZ_HOOK)
        assert content["body"] == "a b"


async def test_nulls_everywhere(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    nulls = {
        key: None
        for key in (
            "pretext",
            "author_name",
            "author_link",
            "title",
            "title_link",
            "color",
            "fields",
            "image_url",
            "thumb_url",
            "footer",
            "ts",
            "actions",
            "blocks",
        )
    }
    payload = {"text": None, "blocks": None, "attachments": [{**nulls, "text": "only text"}, None, 3]}
    response = await http.post(slack_service.hook_url(FUZZ_HOOK), json=payload)
    assert response.text == "ok"
    assert (await slack_service.last_message(FUZZ_HOOK))["body"] == "only text"


_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_mrkdwn_text = st.lists(
    st.sampled_from([*"*_~`<>|!@#:&;^ \nabcXYZ01/.", "http://", "&lt;", "```", "<!date^", ":smile:"]),
    max_size=40,
).map("".join)
_text_object = st.fixed_dictionaries(
    {"type": st.sampled_from(["mrkdwn", "plain_text", "other"]), "text": _mrkdwn_text | _json}
)
_element = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "button",
                "image",
                "text",
                "link",
                "emoji",
                "user",
                "date",
                "color",
                "rich_text_section",
                "rich_text_list",
            ]
        ),
        "text": _text_object | _json,
        "url": st.text(max_size=20) | _json,
        "elements": st.lists(_json, max_size=3),
        "style": _json,
        "indent": _json,
        "unicode": _json,
        "timestamp": _json,
    }
)
_block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "section",
                "header",
                "divider",
                "context",
                "image",
                "actions",
                "rich_text",
                "markdown",
                "video",
                "nope",
            ]
        )
    },
    optional={
        "text": _text_object | _json,
        "fields": st.lists(_text_object | _json, max_size=3),
        "accessory": _element | _json,
        "elements": st.lists(_element | _json, max_size=3),
        "image_url": _json,
        "title": _text_object | _json,
    },
)
_attachment = st.fixed_dictionaries(
    {},
    optional={
        key: _mrkdwn_text | _json
        for key in (
            "pretext",
            "title",
            "title_link",
            "text",
            "color",
            "footer",
            "ts",
            "fallback",
            "author_name",
            "image_url",
        )
    }
    | {
        "fields": st.lists(
            st.fixed_dictionaries({}, optional={"title": _json, "value": _json, "short": _json}) | _json,
            max_size=3,
        ),
        "blocks": st.lists(_block, max_size=2),
    },
)
PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "text": _mrkdwn_text | _json,
        "blocks": st.lists(_block, max_size=3) | _json,
        "attachments": st.lists(_attachment | _json, max_size=3) | _json,
        "mrkdwn": _json,
        "username": _json,
        "icon_emoji": _json,
    },
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=PAYLOADS)
async def test_fuzzed_payloads_never_5xx(
    slack_service: SlackService, http: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    response = await http.post(slack_service.hook_url(FUZZ_HOOK), json=payload)
    assert response.status_code in (200, 400), (response.status_code, response.text, payload)
    assert response.text in ("ok", "invalid_payload", "no_text")
