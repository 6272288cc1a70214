"""livekit-jwt's answers to bad bodies in-process: the integration tier's tables of what
lk-jwt-service answers, byte for byte, to a body it cannot read or that misses a field, on /get_token,
/sfu/get and /delegate_delayed_leave (the service as a process with a real Synapse and SFU:
tests/integration/test_livekit_jwt.py, tests/integration/test_livekit_delegation.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port
from matrix_stack.services.livekit_jwt.app import routes
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.issuer import Issuer
from tests.unit.inprocess import serving


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The integration tier's settings (full access for the loopback homeserver, federation allowed
    to loopback), with an SFU and homeserver that a bad body never reaches."""
    unreachable = free_port()
    settings = LivekitJwtSettings(
        livekit_url=f"ws://127.0.0.1:{unreachable}", key="lk-key", secret="a-livekit-secret-of-forty-bytes-or-so-xx",
        full_access_homeservers=[f"127.0.0.1:{unreachable}"], federation_allow=["127.0.0.1/32"], data_dir=tmp_path,
        log_json=False,
    )  # fmt: skip
    async with serving(settings, Issuer, routes) as (_, http):
        yield http


@pytest.mark.parametrize(
    ("path", "body", "errcode", "message"),
    [
        ("/get_token", b"not json", "M_NOT_JSON", "Error reading request"),
        ("/get_token", b"[]", "M_NOT_JSON", "Error reading request"),
        ("/get_token", b'{"room_id": 5}', "M_NOT_JSON", "Error reading request"),
        ("/get_token", b"{}", "M_BAD_JSON", "The request body is missing `room_id` or `slot_id`"),
        ("/get_token", b'{"room_id": "!r:x", "slot_id": "s"}', "M_BAD_JSON",
         "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`"),
        ("/get_token", b'{"room_id": "!r:x", "slot_id": "s", "member": {"id": "m", "claimed_user_id": "@u:x", '
         b'"claimed_device_id": "D"}, "openid_token": {"access_token": "t"}}', "M_BAD_JSON",
         "The request body `openid_token` is missing a `access_token` or `matrix_server_name`"),
        ("/get_token", b'{"room_id": "!r:x", "slot_id": "s", "member": {"id": "m", "claimed_user_id": "@u:x", '
         b'"claimed_device_id": "D"}, "openid_token": {"access_token": "t", "matrix_server_name": "x"}, '
         b'"delay_id": "d"}', "M_BAD_JSON", "The request body is missing `delay_id` or `delay_timeout`"),
        ("/get_token", b"[" * 5000 + b"]" * 5000, "M_NOT_JSON", "Error reading request"),  # past the parser's depth
        ("/get_token", b'{"room_id": "!r:x", "slot_id": "s", "member": {"id": "m", "claimed_user_id": "@u:x", '
         b'"claimed_device_id": "D"}, "openid_token": {"access_token": "t", "matrix_server_name": "x"}, '
         b'"delay_id": "d", "delay_timeout": 5}', "M_BAD_JSON",
         "`delay_timeout` must be between 1000 and 86400000 milliseconds"),
        ("/sfu/get", b"{", "M_NOT_JSON", "Error reading request"),
        ("/sfu/get", b"{}", "M_BAD_JSON", "Missing room parameter"),
        ("/sfu/get", b'{"room": "!r:x", "openid_token": {}}', "M_BAD_JSON", "Missing OpenID token parameters"),
    ],
)  # fmt: skip
async def test_bad_bodies(
    service: httpx.AsyncClient, path: str, body: bytes, errcode: str, message: str
) -> None:
    answer = await service.post(path, content=body)
    assert answer.status_code == 400
    assert (
        answer.content
        == (json.dumps({"errcode": errcode, "error": message}, separators=(",", ":")) + "\n").encode()
    )
    assert answer.headers["access-control-allow-origin"] == "*"


_MEMBER = b'"member": {"id": "m", "claimed_user_id": "@u:x", "claimed_device_id": "D"}'
_TOKEN = b'"openid_token": {"access_token": "t", "matrix_server_name": "x"}'


@pytest.mark.parametrize(
    ("body", "errcode", "message"),
    [
        (b"not json", "M_NOT_JSON", "Error reading request"),
        (b"[]", "M_NOT_JSON", "Error reading request"),
        (b'{"delay_timeout": "3000"}', "M_NOT_JSON", "Error reading request"),
        (b"{}", "M_BAD_JSON", "The request body is missing `room_id` or `slot_id`"),
        (b'{"room_id": "!r:x", "slot_id": "s"}', "M_BAD_JSON",
         "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`"),
        (b'{"room_id": "!r:x", "slot_id": "s", ' + _MEMBER + b', "openid_token": {"access_token": "t"}}',
         "M_BAD_JSON", "The request body `openid_token` is missing a `access_token` or `matrix_server_name`"),
        (b'{"room_id": "!r:x", "slot_id": "s", ' + _MEMBER + b", " + _TOKEN + b"}",
         "M_BAD_JSON", "The request body is missing `delay_id` or `delay_timeout`"),
        (b'{"room_id": "!r:x", "slot_id": "s", ' + _MEMBER + b", " + _TOKEN + b', "delay_id": "d"}',
         "M_BAD_JSON", "The request body is missing `delay_id` or `delay_timeout`"),
        (b'{"room_id": "!r:x", "slot_id": "s", ' + _MEMBER + b", " + _TOKEN + b', "delay_timeout": 3000}',
         "M_BAD_JSON", "The request body is missing `delay_id` or `delay_timeout`"),
    ],
)  # fmt: skip
async def test_bad_delegation_bodies(
    service: httpx.AsyncClient, body: bytes, errcode: str, message: str
) -> None:
    answer = await service.post("/delegate_delayed_leave", content=body)
    assert answer.status_code == 400, answer.text
    assert answer.json() == {"errcode": errcode, "error": message}
