"""slack-webhook over HTTP, with every message read back from a real Synapse room."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from matrix_stack.shared.matrix.html import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
from tests.integration.conftest import PASSWORD

DATA = Path(__file__).parent.parent / "data" / "slack"
HOOK = "hook-main-0123456789abcdefgh"
BEARER_HOOK = "hook-bearer-0123456789abcdefg"
LIMITED_HOOK = "hook-limited-0123456789abcdef"
FUZZ_HOOK = "hook-fuzz-0123456789abcdefghi"
BEARER = "bearer-secret-value-0123"

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
    url: str
    rooms: dict[str, str]  # hook id -> room id
    reader: Account
    service: LocalService

    def hook_url(self, hook: str = HOOK) -> str:
        return f"{self.url}/hooks/{hook}"

    async def last_message(self, hook: str = HOOK, count: int = 1) -> dict[str, Any]:
        room_id = self.rooms[hook]
        before = len(self.seen.setdefault(room_id, []))
        events = await self.reader.wait_for_messages(room_id, before + count)
        self.seen[room_id] = events
        assert len(events) == before + count, "expected exactly one new message"
        content: dict[str, Any] = events[-1]["content"]
        return content

    seen: dict[str, list[dict[str, Any]]] = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
async def slack_service(
    synapse: LocalSynapse, bot: Account, reader: Account, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SlackService]:
    rooms = {}
    for hook in (HOOK, BEARER_HOOK, LIMITED_HOOK, FUZZ_HOOK):
        rooms[hook] = await reader.create_room(name=f"slack {hook[:12]}", invite=[bot.user_id])
    hooks = [
        {"id": HOOK, "room": rooms[HOOK], "name": "main", "users": {"U012AB3CD": "@reader:localhost"}},
        {"id": BEARER_HOOK, "room": rooms[BEARER_HOOK], "bearer_token": BEARER, "display_name": "CI"},
        {"id": LIMITED_HOOK, "room": rooms[LIMITED_HOOK], "rate_limit": 0.5, "burst": 2},
        {"id": FUZZ_HOOK, "room": rooms[FUZZ_HOOK]},
    ]
    directory = tmp_path_factory.mktemp("slack")
    service = LocalService(
        "slack-webhook", "matrix_stack.services.slack_webhook", "SLACK_WEBHOOK_", free_port(),
        {"HOOKS": json.dumps(hooks), "LOG_JSON": "true"}, directory / "data",
    )  # fmt: skip
    service.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
    service.wait_ready()
    state = SlackService(service.url, rooms, reader, service)
    state.seen = {}
    yield state
    service.stop()


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
    slack_path = f"{slack_service.url}/services/T000/B000/{HOOK}"
    response = await http.post(
        slack_path, json={"text": "slack-shaped url", "unfurl_links": False, "unfurl_media": False}
    )
    assert response.text == "ok"
    content = await slack_service.last_message()
    assert content["body"] == "slack-shaped url"
    assert content["com.beeper.linkpreviews"] == []


async def test_error_responses(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    url = slack_service.hook_url()
    cases = [
        (
            await http.post(f"{slack_service.url}/hooks/unknown-hook-0123456789abc", json={"text": "x"}),
            404,
            "no_service",
        ),
        (
            await http.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
            400,
            "invalid_payload",
        ),
        (await http.post(url, json=["a", "list"]), 400, "invalid_payload"),
        (await http.post(url, json={"text": 42}), 400, "invalid_payload"),
        (
            await http.post(url, content=b"\xff\xfe{}", headers={"Content-Type": "application/json"}),
            400,
            "invalid_payload",
        ),
        (
            await http.post(
                url, content="text=x", headers={"Content-Type": "application/x-www-form-urlencoded"}
            ),
            400,
            "invalid_payload",
        ),
        (await http.post(url, json={"text": ""}), 400, "no_text"),
        (
            await http.post(url, json={"blocks": [{"type": "unknown"}], "attachments": [{"color": "good"}]}),
            400,
            "no_text",
        ),
        (await http.post(url, json={"attachments": [{"text": "x"}] * 101}), 400, "too_many_attachments"),
        (await http.post(slack_service.hook_url(BEARER_HOOK), json={"text": "x"}), 403, "invalid_token"),
        (
            await http.post(
                slack_service.hook_url(BEARER_HOOK),
                json={"text": "x"},
                headers={"Authorization": "Bearer wrong"},
            ),
            403,
            "invalid_token",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.text) == (status, code)
    too_big = await http.post(url, content=b'{"text": "' + b"x" * (1024 * 1024) + b'"}')
    assert too_big.status_code == 413
    get = await http.get(url)
    assert get.status_code == 405


async def test_bearer_and_display_name(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    response = await http.post(
        slack_service.hook_url(BEARER_HOOK),
        json={"text": "build *green*"},
        headers={"Authorization": f"Bearer {BEARER}"},
    )
    assert response.text == "ok"
    content = await slack_service.last_message(BEARER_HOOK)
    assert content["body"] == "CI: build green"
    assert content["formatted_body"] == "<strong>CI</strong>: build <strong>green</strong>"


async def test_rate_limit(slack_service: SlackService, http: httpx.AsyncClient) -> None:
    url = slack_service.hook_url(LIMITED_HOOK)
    answers = [await http.post(url, json={"text": f"burst {i}"}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].text == "rate_limited"
    assert int(answers[2].headers["retry-after"]) >= 1
    events = await slack_service.reader.wait_for_messages(slack_service.rooms[LIMITED_HOOK], 2)
    assert [e["content"]["body"] for e in events] == ["burst 0", "burst 1"]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_inert(fragment: str) -> None:
    """Only the spec's tags, no event handlers, links only to http(s)/mailto, images only mxc."""
    parser = _Elements()
    parser.feed(fragment)
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS, (tag, fragment)
        for name, value in attrs:
            assert not name.startswith("on"), (name, fragment)
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()), (tag, name, fragment)
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:")), (value, fragment)
            if name == "src":
                assert (value or "").startswith("mxc://"), (value, fragment)


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
def test_fuzzed_payloads_never_5xx(slack_service: SlackService, payload: dict[str, Any]) -> None:
    response = httpx.post(slack_service.hook_url(FUZZ_HOOK), json=payload, timeout=10)
    assert response.status_code in (200, 400), (response.status_code, response.text, payload)
    assert response.text in ("ok", "invalid_payload", "no_text")


async def test_oversized_message_is_truncated_not_rejected(
    slack_service: SlackService, http: httpx.AsyncClient
) -> None:
    text = "".join(f"*line {i}* with <https://example.org/{i}|a link>\n" for i in range(4000))  # ~200 KB
    response = await http.post(slack_service.hook_url(), json={"text": text})
    assert response.text == "ok"
    content = await slack_service.last_message()
    assert content["body"].endswith("… (message truncated)")
    assert content["body"].startswith("line 0 with a link (https://example.org/0)\n")
    assert content["formatted_body"].endswith("<br><em>… (message truncated)</em>")
    assert len(json.dumps(content, ensure_ascii=False).encode()) < 64 * 1024
    assert_inert(content["formatted_body"])


def test_new_hook_id_and_config_errors(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    made = subprocess.run(
        [sys.executable, "-m", "matrix_stack.services.slack_webhook", "new-hook-id"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert len(made) == 32
    assert made.replace("-", "").replace("_", "").isalnum()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_WEBHOOK_")}
    env = {
        **clean,
        "SLACK_WEBHOOK_HOMESERVER": "http://x",
        "SLACK_WEBHOOK_USER_ID": "@a:x",
        "SLACK_WEBHOOK_ACCESS_TOKEN": "t",
        "SLACK_WEBHOOK_HOOKS": json.dumps([{"id": "short", "room": "#a:x"}]),
    }
    result = subprocess.run(
        [sys.executable, "-m", "matrix_stack.services.slack_webhook"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: SLACK_WEBHOOK_HOOKS_0: a hook id needs 22-128 characters")
    hooks_file = tmp_path / "hooks.yaml"
    hooks_file.write_text(f"- id: {made}\n  room: '#a:x'\n  bogus: 1\n")
    env = {**env, "SLACK_WEBHOOK_HOOKS_FILE": str(hooks_file)}
    del env["SLACK_WEBHOOK_HOOKS"]
    result = subprocess.run(
        [sys.executable, "-m", "matrix_stack.services.slack_webhook"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr == "config error: SLACK_WEBHOOK_HOOKS_0_BOGUS: Extra inputs are not permitted\n"
