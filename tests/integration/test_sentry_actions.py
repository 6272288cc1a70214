"""Acting on Sentry issues from the room: sentry-webhook posts a signed issue.created, people in the
room react and reply through Element's own client (matrix-js-sdk, in an encrypted room and in a
plain one), and the Sentry stand-in (devstack/sentry.py: Sentry's issue API, token checked) sees the
updates; the issue message is edited to match, and Sentry's refusals come back as short replies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from devstack.processes import ENCRYPTION_KEY, free_port
from devstack.sentry import NO_PERMISSION, Call, LocalSentry
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse, register
from matrix_stack.services.sentry_webhook.actions import ISSUE_FIELD
from matrix_stack.services.sentry_webhook.client import SentryClient, SentryRefused, SentryUnavailable
from tests.integration.conftest import PASSWORD
from tests.integration.e2ee_reader import Event, Reader
from tests.integration.test_sentry_webhook import DATA, SECRET, sign

MakeReader = Callable[..., Awaitable[Reader]]
ISSUE = orjson.loads((DATA / "sentry_issue_created.json").read_bytes())["data"]["issue"]


@pytest.fixture
def sentry_api() -> Iterator[LocalSentry]:
    with LocalSentry("acme") as sentry:
        sentry.add_issue(ISSUE)
        yield sentry


@pytest.fixture
async def sentry_webhook(
    synapse: LocalSynapse, sentry_api: LocalSentry, tmp_path: Path
) -> AsyncIterator[Callable[[str, Account], LocalService]]:
    started: list[LocalService] = []

    def start(room: str, bot: Account) -> LocalService:
        service = LocalService.of("sentry-webhook", free_port(), {
            "CLIENT_SECRET": SECRET, "DEFAULT_ROOM": room, "LOG_JSON": "true", "ENCRYPTION_KEY": ENCRYPTION_KEY,
            "SENTRY_URL": sentry_api.url, "SENTRY_ORGANIZATION": "acme", "SENTRY_TOKEN": sentry_api.token,
        }, tmp_path / "sentry-webhook")  # fmt: skip
        service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.3)


async def bot_messages(reader: Reader, room: str, bot: str) -> list[Event]:
    return [e for e in (await reader.events(room)).messages if e.sender == bot and e.failure is None]


async def bodies_with(reader: Reader, room: str, bot: str, text: str) -> list[str]:
    return [e.body or "" for e in await bot_messages(reader, room, bot) if text in (e.body or "")]


async def puts(sentry: LocalSentry) -> list[Call]:
    return [call for call in sentry.calls if call.method == "PUT"]


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
async def test_reactions_and_replies_resolve_and_archive_issues(
    sentry_webhook: Callable[[str, Account], LocalService],
    sentry_api: LocalSentry,
    e2ee_readers: MakeReader,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    encrypted: bool,
) -> None:
    bot = await register(synapse, http, f"sentrybot-{uuid.uuid4().hex[:8]}", PASSWORD)
    alice = await e2ee_readers("alice")  # the room's creator: above every power level (room version 12)
    bob = await e2ee_readers("bob")  # a member at power level 0
    room = await alice.create_room(encrypted=encrypted, invite=[bob.user_id, bot.user_id], name="errors")
    await bob.join(room)
    service = sentry_webhook(room, bot)
    raw = (DATA / "sentry_issue_created.json").read_bytes()
    headers = {
        "Sentry-Hook-Resource": "issue",
        "Sentry-Hook-Signature": sign(raw),
        "Request-ID": uuid.uuid4().hex,
    }
    assert (await http.post(f"{service.url}/sentry", content=raw, headers=headers)).status_code == 200
    [issue] = await until(lambda: bot_messages(alice, room, bot.user_id))
    assert issue.encrypted is encrypted
    assert issue.content is not None
    assert issue.content[ISSUE_FIELD] == {
        "issue": "1170820242",
        "short_id": "FRONT-END-9",
        "project": "front-end",
    }

    # bob (power 0) may not; alice's ✅ resolves it with the bridge's token.
    await bob.react(room, issue.event_id, "✅")
    [refused] = await until(lambda: bodies_with(alice, room, bot.user_id, "⛔"))
    assert "power level 50" in refused
    assert await puts(sentry_api) == []
    await alice.react(room, issue.event_id, "✅")
    [resolve] = await until(lambda: puts(sentry_api))
    assert resolve.path == "/api/0/organizations/acme/issues/1170820242/"
    assert resolve.authorization == f"Bearer {sentry_api.token}"
    assert (resolve.body, resolve.status) == ({"status": "resolved"}, 200)
    assert sentry_api.issue("1170820242")["status"] == "resolved"
    assert await until(lambda: bodies_with(alice, room, bot.user_id, f"✅ resolved · by {alice.user_id}"))

    # A reply in the issue's thread archives it for two hours: Sentry's ignoreDuration in minutes.
    await alice.reply(room, issue.event_id, "ignore 2h", thread=True)
    archive = (await until(lambda: _at_least(sentry_api, 2)))[1]
    assert archive.body == {"status": "ignored", "substatus": "archived_until_condition_met",
                            "statusDetails": {"ignoreDuration": 120}}  # fmt: skip
    assert sentry_api.issue("1170820242")["statusDetails"]["ignoreDuration"] == 120
    assert await until(
        lambda: bodies_with(alice, room, bot.user_id, f"🔕 archived for 2h · by {alice.user_id}")
    )

    # Sentry refusing (the integration lost its write scope) or rate-limiting: a short reply, no traceback.
    sentry_api.answer_next(403, {"detail": NO_PERMISSION})
    await alice.reply(room, issue.event_id, "resolve", thread=True)
    [denied] = await until(lambda: bodies_with(alice, room, bot.user_id, "Sentry refused"))
    assert f"Sentry refused to change FRONT-END-9: {NO_PERMISSION}" in denied
    sentry_api.answer_next(429, {"detail": "Request was throttled."}, {"Retry-After": "120"})
    await alice.reply(room, issue.event_id, "unresolve")
    [busy] = await until(lambda: bodies_with(alice, room, bot.user_id, "rate-limiting"))
    assert "try again in 120 s" in busy
    assert "Traceback" not in "".join(await bodies_with(alice, room, bot.user_id, ""))
    log = service.log.read_text()
    assert "Sentry issue changed from Matrix" in log
    assert sentry_api.token not in log


async def test_the_client_reads_sentry_s_answers(sentry_api: LocalSentry) -> None:
    """Each of Sentry's answers as the client reports it: DRF field errors, refusals, a short
    Retry-After waited out, an unreachable host."""
    async with SentryClient(sentry_api.url, "acme", sentry_api.token) as client:
        with pytest.raises(SentryRefused, match=r"statusDetails\.ignoreWindow: Ensure this value"):
            await client.update("1170820242", {"status": "ignored", "statusDetails": {"ignoreWindow": 99999}})
        with pytest.raises(SentryRefused, match='status: "done" is not a valid choice'):
            await client.update("1170820242", {"status": "done"})
        with pytest.raises(SentryRefused, match="The requested resource does not exist") as missing:
            await client.issue("404404")
        assert missing.value.status == 404
        sentry_api.answer_next(429, {"detail": "Request was throttled."}, {"Retry-After": "0.2"})
        assert (await client.update("1170820242", {"status": "resolved"}))["status"] == "resolved"
    async with SentryClient(sentry_api.url, "acme", "wrong-token") as client:
        with pytest.raises(SentryRefused, match="Invalid token") as invalid:
            await client.issue("1170820242")
        assert invalid.value.status == 401
    async with SentryClient(sentry_api.url, "other-org", sentry_api.token) as client:
        with pytest.raises(SentryRefused, match=NO_PERMISSION):
            await client.update("1170820242", {"status": "resolved"})
    async with SentryClient(f"http://127.0.0.1:{free_port()}", "acme", "t", timeout=2) as client:
        with pytest.raises(SentryUnavailable, match="unreachable"):
            await client.issue("1170820242")


async def _at_least(sentry: LocalSentry, count: int) -> list[Call]:
    found = await puts(sentry)
    return found if len(found) >= count else []
