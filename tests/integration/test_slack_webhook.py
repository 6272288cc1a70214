"""slack-webhook over HTTP, with every message read back from a real Synapse room."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.integration.conftest import PASSWORD
from tests.unit.inert import assert_inert

DATA = Path(__file__).parent.parent / "data" / "slack"
HOOK = "hook-main-0123456789abcdefgh"
BEARER_HOOK = "hook-bearer-0123456789abcdefg"
LIMITED_HOOK = "hook-limited-0123456789abcdef"
BEARER = "bearer-secret-value-0123"

# What a sample must become, byte for byte, in the room: one sample's round trip proves the wiring
# (every sample, mrkdwn, injections, nulls and fuzzing, in-process: tests/unit/test_slack_webhook_samples.py).
SAMPLES = {
    "slack_attachment_blocks.json": (
        "This is a section block with an accessory image.\n🖼 cute cat "
        "(https://pbs.twimg.com/profile_images/625633822235693056/lNGUneLX_400x400.jpg)\n"
        "This is a section block with a button.\none\ntwo\nthree\nfour\nfive",
        "<blockquote>This is a section block with an accessory image.<br>"
        '<a href="https://pbs.twimg.com/profile_images/625633822235693056/lNGUneLX_400x400.jpg">🖼 cute cat</a>'
        "<br>This is a section block with a button.<br>one<br>two<br>three<br>four<br>five</blockquote>",
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
    for hook in (HOOK, BEARER_HOOK, LIMITED_HOOK):
        rooms[hook] = await reader.create_room(name=f"slack {hook[:12]}", invite=[bot.user_id])
    hooks = [
        {"id": HOOK, "room": rooms[HOOK], "name": "main", "users": {"U012AB3CD": "@reader:localhost"}},
        {"id": BEARER_HOOK, "room": rooms[BEARER_HOOK], "bearer_token": BEARER, "display_name": "CI"},
        {"id": LIMITED_HOOK, "room": rooms[LIMITED_HOOK], "rate_limit": 0.5, "burst": 2},
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
