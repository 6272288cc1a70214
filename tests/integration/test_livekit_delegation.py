"""livekit-jwt's MSC4140 delegated leave end to end: a real federating Synapse with delayed events
holds the caller's delayed `call.member` leave; the service (its console entry point) keeps it from
firing by restarting it, and sends it when a signed LiveKit webhook says the participant has gone.
The webhooks are signed as livekit-server signs them, with livekit-api and livekit-protocol."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from google.protobuf import json_format
from livekit import api
from livekit.protocol import models
from livekit.protocol.webhook import WebhookEvent

from devstack.livekit import LocalLivekit
from devstack.livekit_jwt import LocalLivekitJwt
from devstack.synapse import Account, LocalSynapse, openid_token, register
from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.shared.route.processes import free_ports

PASSWORD = "delegating-caller-7"
KEY = "lk-key"
SECRET = "a-livekit-secret-of-forty-bytes-or-so-yy"
SCHEME = "v0.4.3"
SLOT = "m.call#ROOM"
MEMBER_EVENT = "org.matrix.msc3401.call.member"
DELAY_QUERY = "org.matrix.msc4140.delay"
DELAYED_EVENTS = "/_matrix/client/unstable/org.matrix.msc4140/delayed_events"
LEFT: dict[str, Any] = {}  # what a MatrixRTC client's delayed leave sets the membership to
UNAUTHORISED = b'{"errcode":"M_UNAUTHORIZED","error":"The request could not be authorised."}\n'
FULL_ACCESS_ONLY = "Delegation of delayed events is only supported for full access users"

_devices = itertools.count(1)


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    port, federation_port = free_ports(2)
    server = LocalSynapse.federating(
        tmp_path_factory.mktemp("synapse-delayed"),
        port,
        federation_port,
        extra_config={
            "max_event_delay_duration": "24h",
            # every restart comes unauthenticated from 127.0.0.1, ratelimited by address (1/s by default)
            "rc_delayed_event_mgmt": {"per_second": 1000, "burst_count": 1000},
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def livekit() -> Iterator[LocalLivekit]:
    with LocalLivekit(key=KEY, secret=SECRET) as sfu:
        yield sfu


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("lk-delegation-secrets")
    (where / "key").write_text(KEY + "\n")
    (where / "secret").write_text(SECRET + "\n")
    return where


def service_env(
    synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path, data_dir: Path, **extra: str
) -> dict[str, str]:
    return {
        "LIVEKIT_URL": livekit.url,
        "KEY_FILE": str(secrets_dir / "key"),
        "SECRET_FILE": str(secrets_dir / "secret"),
        "FULL_ACCESS_HOMESERVERS": synapse.server_name,
        "FEDERATION_ALLOW": "127.0.0.1/32",
        "FEDERATION_CA_FILE": str(synapse.federation_tls.ca),
        "DATA_DIR": str(data_dir),
        # the homeserver's client-server API is plain HTTP on loopback, not behind a well-known
        "CS_API_OVERRIDES": f"{synapse.server_name}={synapse.url}",
        **extra,
    }


@pytest.fixture(scope="module")
def service(
    synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalLivekitJwt]:
    data = tmp_path_factory.mktemp("lk-delegation-data")
    process = LocalLivekitJwt(service_env(synapse, livekit, secrets_dir, data))
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
def restricted(
    synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalLivekitJwt]:
    """Full access for another homeserver only: this Synapse's users may not delegate."""
    data = tmp_path_factory.mktemp("lk-delegation-restricted")
    env = service_env(synapse, livekit, secrets_dir, data, FULL_ACCESS_HOMESERVERS="other.example")
    process = LocalLivekitJwt(env)
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
async def caller(synapse: LocalSynapse, http: httpx.AsyncClient) -> Account:
    return await register(synapse, http, "delegator", PASSWORD)


@pytest.fixture(scope="module")
async def call_room(caller: Account) -> str:
    return await caller.create_room(name="a call")


@dataclass
class Membership:
    """One device's call membership: its state event now, and the delayed leave the homeserver holds."""

    account: Account
    room_id: str
    device_id: str
    member_id: str
    delay_id: str
    delay_ms: int

    @property
    def state_key(self) -> str:
        return f"_{self.account.user_id}_{self.device_id}"

    @property
    def joined(self) -> dict[str, Any]:
        return {"application": "m.call", "call_id": "", "scope": "m.room", "device_id": self.device_id}

    @property
    def sfu_room(self) -> str:
        return hashing.room(SCHEME, self.room_id, SLOT)

    @property
    def identity(self) -> str:
        return hashing.identity(SCHEME, self.account.user_id, self.device_id, self.member_id)

    def body(self, openid: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "room_id": self.room_id,
            "slot_id": SLOT,
            "openid_token": openid,
            "member": {"id": self.member_id, "claimed_user_id": self.account.user_id,
                       "claimed_device_id": self.device_id},
            "delay_id": self.delay_id,
            "delay_timeout": self.delay_ms,
            **extra,
        }  # fmt: skip

    async def event(self) -> dict[str, Any]:
        """The membership state event as it is now."""
        path = f"/rooms/{quote(self.room_id, safe='')}/state/{MEMBER_EVENT}/{quote(self.state_key, safe='')}"
        event: dict[str, Any] = await self.account.api("GET", path, format="event")
        return event

    async def pending(self) -> dict[str, Any] | None:
        """The delayed leave as the homeserver lists it, or None once it is sent (or cancelled)."""
        response = await self.account.http.get(
            self.account.base_url + DELAYED_EVENTS,
            headers={"Authorization": f"Bearer {self.account.access_token}"},
        )
        assert response.status_code == 200, response.text
        for delayed in response.json()["delayed_events"]:
            if delayed["delay_id"] == self.delay_id:
                return dict(delayed)
        return None


def since(delayed: dict[str, Any]) -> int:
    """When the delayed event's timer last (re)started, in ms (field renamed during MSC4140)."""
    return int(delayed.get("delayed_since_ts", delayed.get("running_since", 0)))


async def join_call(account: Account, room_id: str, delay_ms: int) -> Membership:
    """What a MatrixRTC client does: set its membership, then schedule the leave as a delayed event."""
    number = next(_devices)
    membership = Membership(account, room_id, f"DEVICE{number}", f"member-{number}", "", delay_ms)
    path = f"/rooms/{quote(room_id, safe='')}/state/{MEMBER_EVENT}/{quote(membership.state_key, safe='')}"
    await account.api("PUT", path, membership.joined)
    answer = await account.api("PUT", path, LEFT, **{DELAY_QUERY: delay_ms})
    membership.delay_id = answer["delay_id"]
    assert (await membership.pending()) is not None
    return membership


def tail(service: LocalLivekitJwt, lines: int = 40) -> str:
    return "service log:\n" + "\n".join(service.log.read_text(errors="replace").splitlines()[-lines:])


async def hold(membership: Membership, seconds: float, service: LocalLivekitJwt) -> None:
    """For `seconds`, the delayed leave must stay pending and the membership unchanged, however many
    of its timeouts pass; the homeserver must see it restarted meanwhile."""
    first = await membership.pending()
    assert first is not None, tail(service)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        event = await membership.event()
        assert event["content"] == membership.joined, f"the delayed leave fired\n{tail(service)}"
        assert (await membership.pending()) is not None, tail(service)
    last = await membership.pending()
    assert last is not None, tail(service)
    assert since(last) > since(first), f"never restarted: {first} -> {last}\n{tail(service)}"


async def sent_on_webhook(
    service: LocalLivekitJwt,
    memberships: list[Membership],
    event: str,
    room: str,
    identity: str | None = None,
) -> list[dict[str, Any]]:
    """The webhook, then each leave sent on its word: soon, and before its own timeout would have."""
    before = [await membership.pending() for membership in memberships]
    assert all(before), f"not pending: {before}\n{tail(service)}"
    await webhook(service, event, room, identity)
    deadline = time.monotonic() + 2.5
    sent = []
    for membership, pending in zip(memberships, before, strict=True):
        while (found := await membership.event())["content"] != LEFT:
            assert time.monotonic() < deadline, f"the delayed leave was not sent\n{tail(service)}"
            await asyncio.sleep(0.1)
        assert pending is not None
        # sent at the service's /send, not by the homeserver's timer
        assert found["origin_server_ts"] < since(pending) + membership.delay_ms, (found, pending)
        assert (await membership.pending()) is None
        sent.append(found)
    return sent


def webhook_body(event: str, room: str, identity: str | None = None) -> bytes:
    """A LiveKit webhook as livekit-server posts it: the WebhookEvent protobuf as JSON."""
    message = WebhookEvent(
        event=event,
        id=f"EV_{next(_devices)}",
        created_at=int(time.time()),
        room=models.Room(sid="RM_delegation", name=room, empty_timeout=300, departure_timeout=20),
    )
    if identity is not None:
        state = models.ParticipantInfo.DISCONNECTED if "left" in event else models.ParticipantInfo.ACTIVE
        message.participant.CopyFrom(
            models.ParticipantInfo(sid="PA_delegation", identity=identity, state=state)
        )
    return json_format.MessageToJson(message).encode()


def signature(
    body: bytes, key: str = KEY, secret: str = SECRET, *, ttl: timedelta = timedelta(minutes=5)
) -> str:
    """livekit-server's Authorization header: a JWT of the API key whose `sha256` claim is the body's."""
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return str(api.AccessToken(key, secret).with_sha256(digest).with_ttl(ttl).to_jwt())


async def post(url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, **options)


async def webhook(
    service: LocalLivekitJwt, event: str, room: str, identity: str | None = None, *, ok: bool = True
) -> httpx.Response:
    body = webhook_body(event, room, identity)
    headers = {"Authorization": signature(body), "Content-Type": "application/webhook+json"}
    answer = await post(service.url + "/sfu_webhook", content=body, headers=headers)
    if ok:
        assert answer.is_success, f"{event}: {answer.status_code} {answer.text}\n{tail(service)}"
    return answer


async def delegate(service: LocalLivekitJwt, membership: Membership, **extra: Any) -> None:
    body = membership.body(await openid_token(membership.account), **extra)
    answer = await post(service.url + "/delegate_delayed_leave", json=body)
    assert (answer.status_code, answer.content) == (200, b"{}\n"), f"{answer.text}\n{tail(service)}"


def unused_port() -> socket.socket:
    """A listening socket nobody accepts on: a connection attempt would wait in its backlog."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    return sock


def was_connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


async def test_delegation_holds_the_leave_until_the_participant_leaves(
    service: LocalLivekitJwt, caller: Account, call_room: str
) -> None:
    membership = await join_call(caller, call_room, 3000)
    trap = unused_port()
    try:
        # the client's CS-API URL is not where the service goes (an SSRF vector): the override is
        await delegate(service, membership, delay_cs_api_url=f"http://127.0.0.1:{trap.getsockname()[1]}")
        await webhook(service, "participant_joined", membership.sfu_room, membership.identity)
        # none of these concern the delegation: another participant, another room, a forged webhook
        other = hashing.identity(SCHEME, caller.user_id, membership.device_id, "another-member")
        await webhook(service, "participant_left", membership.sfu_room, other)
        elsewhere = hashing.room(SCHEME, "!another:example.org", SLOT)
        await webhook(service, "participant_left", elsewhere, membership.identity)
        body = webhook_body("participant_left", membership.sfu_room, membership.identity)
        forged = await post(service.url + "/sfu_webhook", content=body,
                            headers={"Authorization": signature(body, secret="not-" + SECRET)})  # fmt: skip
        assert forged.status_code == 401
        await hold(membership, 2 * membership.delay_ms / 1000, service)
        [event] = await sent_on_webhook(
            service, [membership], "participant_left", membership.sfu_room, membership.identity
        )
        assert event["sender"] == caller.user_id
        assert not was_connected(trap)
    finally:
        trap.close()


async def test_a_restricted_user_may_not_delegate(
    restricted: LocalLivekitJwt, caller: Account, call_room: str
) -> None:
    membership = Membership(caller, call_room, "DEVICE-R", "member-r", "never-delegated", 3000)
    token = await openid_token(caller)
    answer = await post(restricted.url + "/delegate_delayed_leave", json=membership.body(token))
    assert answer.status_code == 403, answer.text
    assert answer.json() == {"errcode": "M_FORBIDDEN", "error": FULL_ACCESS_ONLY}
    answer = await post(restricted.url + "/get_token", json=membership.body(token))
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"errcode": "M_BAD_JSON", "error": FULL_ACCESS_ONLY}


async def test_a_token_for_another_user_or_a_wrong_token_is_401(
    service: LocalLivekitJwt, caller: Account, call_room: str
) -> None:
    membership = Membership(caller, call_room, "DEVICE-U", "member-u", "never-delegated", 3000)
    token = await openid_token(caller)
    other = membership.body(token)
    other["member"]["claimed_user_id"] = "@someone-else:" + token["matrix_server_name"]
    for body in (other, membership.body({**token, "access_token": "not-a-real-token"})):
        answer = await post(service.url + "/delegate_delayed_leave", json=body)
        assert (answer.status_code, answer.content) == (401, UNAUTHORISED)


# The bad delegation-body table, in-process: tests/unit/test_livekit_jwt_bodies.py.


async def test_a_webhook_without_a_good_signature_is_401(service: LocalLivekitJwt) -> None:
    room = hashing.room(SCHEME, "!somewhere:example.org", SLOT)
    body = webhook_body("room_finished", room)
    other_body = webhook_body("room_finished", hashing.room(SCHEME, "!elsewhere:example.org", SLOT))
    for headers in (
        {},  # unsigned
        {"Authorization": signature(body, secret="not-" + SECRET)},  # another secret
        {"Authorization": signature(body, key="another-key")},  # an unknown key
        {"Authorization": signature(other_body)},  # signed, but for another body
        {"Authorization": signature(body, ttl=timedelta(minutes=-5))},  # expired, past the leeway
        {"Authorization": str(api.AccessToken(KEY, SECRET).to_jwt())},  # signed, but for no body
        {"Authorization": "not-a-jwt"},
    ):
        answer = await post(service.url + "/sfu_webhook", content=body,
                            headers={"Content-Type": "application/webhook+json", **headers})  # fmt: skip
        assert answer.status_code == 401, (headers, answer.status_code, answer.text)
    assert (await webhook(service, "room_finished", room)).is_success  # the same, signed


async def test_delegations_survive_a_restart_of_the_service(
    synapse: LocalSynapse,
    livekit: LocalLivekit,
    secrets_dir: Path,
    tmp_path: Path,
    caller: Account,
    call_room: str,
) -> None:
    data = tmp_path / "data"
    env = service_env(synapse, livekit, secrets_dir, data)
    first = LocalLivekitJwt(env, directory=tmp_path / "first")
    second = LocalLivekitJwt(env, directory=tmp_path / "second")
    try:
        first.start()
        membership = await join_call(caller, call_room, 8000)
        await delegate(first, membership)
        await webhook(first, "participant_joined", membership.sfu_room, membership.identity)
        assert (data / "delegations.sqlite3").exists()
        # stop just after a restart, so the down time eats as little of the timeout as it can
        pending = await membership.pending()
        assert pending is not None
        started = since(pending)
        deadline = time.monotonic() + membership.delay_ms / 1000
        while since(pending) == started:
            assert time.monotonic() < deadline, f"never restarted\n{tail(first)}"
            await asyncio.sleep(0.1)
            pending = await membership.pending()
            assert pending is not None, tail(first)
        first.stop()
        restarted = since(pending)
        second.start()
        # the new process carries on: past the timeout as the old one left it, nothing fired
        seconds_left = (restarted + membership.delay_ms) / 1000 - time.time()
        await hold(membership, max(seconds_left, 0) + 1.5, second)
        await sent_on_webhook(
            second, [membership], "participant_connection_aborted", membership.sfu_room, membership.identity
        )
    finally:
        first.close()
        second.close()


async def test_get_token_with_delay_fields_delegates_and_room_finished_sends_all(
    service: LocalLivekitJwt, livekit: LocalLivekit, caller: Account, call_room: str
) -> None:
    by_token = await join_call(caller, call_room, 3000)
    answer = await post(service.url + "/get_token", json=by_token.body(await openid_token(caller)))
    assert answer.status_code == 200, f"{answer.text}\n{tail(service)}"
    assert list(answer.json()) == ["url", "jwt"]
    assert answer.json()["url"] == livekit.url
    claims = api.TokenVerifier(KEY, SECRET).verify(answer.json()["jwt"])
    assert claims.video is not None
    assert (claims.identity, claims.video.room) == (by_token.identity, by_token.sfu_room)
    # another device of the same call, delegated on its own
    by_call = await join_call(caller, call_room, 3000)
    await delegate(service, by_call)
    for membership in (by_token, by_call):
        await webhook(service, "participant_joined", membership.sfu_room, membership.identity)
    await asyncio.gather(*(hold(m, 1.5 * m.delay_ms / 1000, service) for m in (by_token, by_call)))
    await sent_on_webhook(service, [by_token, by_call], "room_finished", by_token.sfu_room)
