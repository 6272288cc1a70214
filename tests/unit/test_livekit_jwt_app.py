"""livekit-jwt's app in-process, on every answer that needs no homeserver: lk-jwt-service's bytes for
bad bodies and refusals, its preflight and 405, the homeserver-native endpoints (Synapse's hs_token
instead of an OpenID lookup), delegations, and how each answer is counted."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from devstack.processes import free_port
from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.services.livekit_jwt.app import routes
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.issuer import Issuer
from tests.unit.inprocess import serving

SECRET = "a-livekit-secret-of-forty-bytes-or-so-zz"
HS_TOKEN = "the-registrations-hs-token-0123456789"
HOMESERVER = "hs.example"
NATIVE = "/_matrix/client/v1/rtc/livekit"
USER = "X-Matrix-User-Identifier"  # whom Synapse authenticated
FORWARDED = {"Authorization": f"Bearer {HS_TOKEN}", USER: f"@alice:{HOMESERVER}"}
MEMBER: dict[str, Any] = {
    "room_id": "!call:example.org",
    "slot_id": "m.call#ROOM",
    "member": {"id": "m-1", "claimed_device_id": "DEV"},
}
DELAY = {"delay_id": "delay-1", "delay_timeout": 5000}
CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST",
    "access-control-allow-headers": "Accept, Content-Type, Content-Length, Accept-Encoding, X-CSRF-Token",
    "content-type": "application/json",
}


def go_error(errcode: str, message: str) -> bytes:
    """lk-jwt-service's error body: Go's json.Encoder, a trailing newline."""
    return (json.dumps({"errcode": errcode, "error": message}, separators=(",", ":")) + "\n").encode()


Settings = Callable[..., LivekitJwtSettings]
UNAUTHORISED = go_error("M_UNAUTHORIZED", "The request could not be authorised.")


@pytest.fixture
def make(tmp_path: Path) -> Settings:
    """Settings for livekit-jwt with Synapse's routes, an SFU that is not there and homeservers never
    reached (OpenID lookups to loopback are refused by the egress policy before any connection)."""

    def settings(**extra: Any) -> LivekitJwtSettings:
        unreachable = f"http://127.0.0.1:{free_port()}"
        return LivekitJwtSettings(**{
            "livekit_url": "wss://sfu.example.org", "livekit_api_url": unreachable, "key": "lk-key",
            "secret": SECRET, "full_access_homeservers": [HOMESERVER], "appservice_token": HS_TOKEN,
            "homeserver_name": HOMESERVER, "data_dir": tmp_path, "cs_api_overrides": [f"{HOMESERVER}={unreachable}"],
            "log_json": False, **extra,
        })  # fmt: skip

    return settings


@pytest.fixture
async def livekit(make: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(make(), Issuer, routes) as (_, http):
        yield http


def openid_body(**extra: Any) -> dict[str, Any]:
    return {**MEMBER, "member": {**MEMBER["member"], "claimed_user_id": "@alice:127.0.0.1"},
            "openid_token": {"access_token": "t", "matrix_server_name": "127.0.0.1:8448"}, **extra}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "body", "errcode", "message"),
    [
        ("/get_token", b"not json", "M_NOT_JSON", "Error reading request"),
        ("/get_token", b"[]", "M_NOT_JSON", "Error reading request"),
        ("/get_token", b"[" * 5000 + b"]" * 5000, "M_NOT_JSON", "Error reading request"),
        ("/get_token", b"{}", "M_BAD_JSON", "The request body is missing `room_id` or `slot_id`"),
        ("/get_token", json.dumps(openid_body(delay_id="d")).encode(), "M_BAD_JSON",
         "The request body is missing `delay_id` or `delay_timeout`"),
        ("/sfu/get", b"{}", "M_BAD_JSON", "Missing room parameter"),
        ("/sfu/get", b'{"room": "!r:x", "openid_token": {}}', "M_BAD_JSON", "Missing OpenID token parameters"),
        ("/delegate_delayed_leave", json.dumps(openid_body()).encode(), "M_BAD_JSON",
         "The request body is missing `delay_id` or `delay_timeout`"),  # before any lookup
        (f"{NATIVE}/get_token", b"{}", "M_BAD_JSON", "The request body is missing `room_id` or `slot_id`"),
        (f"{NATIVE}/get_token", b'{"room_id": "!r:x", "slot_id": "s", "member": {"id": "m"}}', "M_BAD_JSON",
         "The request body `member` is missing a `id` or `claimed_device_id`"),
    ],
)  # fmt: skip
async def test_bad_bodies(
    livekit: httpx.AsyncClient, path: str, body: bytes, errcode: str, message: str
) -> None:
    answer = await livekit.post(path, content=body, headers=FORWARDED)
    assert (answer.status_code, answer.content) == (400, go_error(errcode, message))
    assert {name: answer.headers[name] for name in CORS} == CORS


async def test_refusals_are_one_401(livekit: httpx.AsyncClient) -> None:
    lookups = [
        await livekit.post("/get_token", json=openid_body()),  # loopback: refused by the egress policy
        await livekit.post("/sfu/get", json={"room": "!r:x", "openid_token": openid_body()["openid_token"]}),
        await livekit.post("/delegate_delayed_leave", json=openid_body(**DELAY)),
    ]
    other_user = {**MEMBER, "member": {**MEMBER["member"], "claimed_user_id": f"@mallory:{HOMESERVER}"}}
    forwarded = [
        await livekit.post(f"{NATIVE}/get_token", json=MEMBER),
        await livekit.post(
            f"{NATIVE}/get_token", json=MEMBER, headers={"Authorization": "Bearer user-token"}
        ),
        await livekit.post(f"{NATIVE}/get_token", json=MEMBER, headers={**FORWARDED, USER: "@x:elsewhere"}),
        await livekit.post(f"{NATIVE}/get_token", json=other_user, headers=FORWARDED),
    ]
    for answer in lookups + forwarded:
        assert (answer.status_code, answer.content) == (401, UNAUTHORISED)
        assert answer.headers["access-control-allow-origin"] == "*"
    unsigned = await livekit.post("/sfu_webhook", content=b"{}", headers={"Authorization": "not-livekit"})
    assert (unsigned.status_code, unsigned.content) == (401, b"")
    metrics = (await livekit.get("/metrics")).text
    assert 'matrix_stack_livekit_tokens_total{endpoint="get_token",outcome="401"} 1.0' in metrics
    assert 'matrix_stack_livekit_tokens_total{endpoint="native_get_token",outcome="401"} 4.0' in metrics
    assert 'matrix_stack_livekit_refusals_total{reason="' in metrics


async def test_preflight_and_other_methods(livekit: httpx.AsyncClient) -> None:
    preflight = await livekit.options("/get_token")
    assert (preflight.status_code, preflight.content) == (200, b"")
    assert {name: preflight.headers[name] for name in CORS} == CORS
    for method in ("GET", "PUT", "DELETE"):
        wrong = await livekit.request(method, f"{NATIVE}/delegate_delayed_leave")
        assert (wrong.status_code, wrong.content) == (405, b"")
        assert wrong.headers["access-control-allow-origin"] == "*"


async def test_a_forwarded_user_without_full_access_gets_a_join_token(make: Settings) -> None:
    async with serving(make(full_access_homeservers=["other.example"]), Issuer, routes) as (_, http):
        answer = await http.post(f"{NATIVE}/get_token", json=MEMBER, headers=FORWARDED)
        delaying = {**MEMBER, **DELAY}
        delegating = await http.post(f"{NATIVE}/get_token", json=delaying, headers=FORWARDED)
        leave = await http.post(f"{NATIVE}/delegate_delayed_leave", json=delaying, headers=FORWARDED)
    assert answer.status_code == 200, answer.text  # no room to create: the SFU is never asked
    assert answer.content.endswith(b"}\n")
    assert list(answer.json()) == ["url", "jwt"]
    claims = jwt.decode(answer.json()["jwt"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == hashing.identity("v0.4.3", f"@alice:{HOMESERVER}", "DEV", "m-1")
    room = hashing.room("v0.4.3", "!call:example.org", "m.call#ROOM")
    assert claims["video"] == {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True}
    not_full = "Delegation of delayed events is only supported for full access users"
    assert (delegating.status_code, delegating.content) == (400, go_error("M_BAD_JSON", not_full))
    assert (leave.status_code, leave.content) == (403, go_error("M_FORBIDDEN", not_full))


async def test_full_access_with_the_sfu_down_is_a_500(livekit: httpx.AsyncClient) -> None:
    answer = await livekit.post(f"{NATIVE}/get_token", json=MEMBER, headers=FORWARDED)
    assert answer.status_code == 500
    assert answer.content == go_error("M_UNKNOWN", "Unable to create room on SFU")


async def test_delegations_and_their_limit(livekit: httpx.AsyncClient, make: Settings) -> None:
    answers = [
        await livekit.post(f"{NATIVE}/delegate_delayed_leave", json={**MEMBER, "delay_id": f"d{i}", "delay_timeout": 5000},
                           headers=FORWARDED)
        for i in range(9)
    ]  # fmt: skip
    assert [(a.status_code, a.content) for a in answers[:8]] == [(200, b"{}\n")] * 8
    limit = go_error("M_LIMIT_EXCEEDED", "too many delegated events for this participant")
    assert (answers[8].status_code, answers[8].content) == (429, limit)
    async with serving(make(delegation=False), Issuer, routes) as (_, http):
        off = await http.post(f"{NATIVE}/delegate_delayed_leave", json={**MEMBER, **DELAY}, headers=FORWARDED)
    unsupported = go_error("M_BAD_JSON", "Delegation of delayed events is not supported by this service")
    assert (off.status_code, off.content) == (400, unsupported)
