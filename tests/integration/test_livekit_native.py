"""The homeserver-native token endpoint (MSC4195 hosted by the homeserver, forwarded by MSC4512): a
real Synapse with `msc4512_enabled` authenticates the user and forwards
`/_matrix/client/*/rtc/livekit/get_token` to livekit-jwt registered as an application service;
no OpenID token, no federation lookup."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import yaml

from devstack.livekit import LocalLivekit
from devstack.livekit_jwt import LocalLivekitJwt
from devstack.processes import free_port
from devstack.synapse import Account, LocalSynapse, register
from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.shared.route.processes import free_ports

SECRET = "a-livekit-secret-of-forty-bytes-or-so-yy"
HS_TOKEN = secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def service_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory, service_port: int) -> Iterator[LocalSynapse]:
    directory = tmp_path_factory.mktemp("synapse-native")
    registration = directory / "livekit-jwt-registration.yaml"
    registration.write_text(yaml.safe_dump({
        "id": "livekit-jwt", "url": None, "as_token": secrets.token_urlsafe(24), "hs_token": HS_TOKEN,
        "sender_localpart": "livekit-jwt", "namespaces": {"users": [], "aliases": [], "rooms": []},
        "io.element.msc4512.proxy_prefix": "rtc/livekit",
        "io.element.msc4512.proxy_url": f"http://127.0.0.1:{service_port}",
    }))  # fmt: skip
    (port,) = free_ports(1)
    server = LocalSynapse(directory, port, extra_config={
        "experimental_features": {"msc4512_enabled": True},
        "app_service_config_files": [str(registration)],
    })  # fmt: skip
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(
    synapse: LocalSynapse, service_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalLivekitJwt, LocalLivekit]]:
    with LocalLivekit(key="lk-key", secret=SECRET) as sfu:
        process = LocalLivekitJwt(
            {"LIVEKIT_URL": sfu.url, "KEY": "lk-key", "SECRET": SECRET, "FULL_ACCESS_HOMESERVERS": synapse.server_name,
             "APPSERVICE_TOKEN": HS_TOKEN, "HOMESERVER_NAME": synapse.server_name},
            directory=tmp_path_factory.mktemp("native-service"), port=service_port,
        )  # fmt: skip
        process.start()
        yield process, sfu
        process.close()


@pytest.fixture(scope="module")
async def user(synapse: LocalSynapse, http: httpx.AsyncClient) -> Account:
    return await register(synapse, http, "native-caller", "native-password-6")


BODY = {
    "room_id": "!call:localhost",
    "slot_id": "m.call#ROOM",
    "member": {"id": "m-1", "claimed_device_id": "DEV"},
}


async def post(url: str, body: Any, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, json=body, headers=headers)


@pytest.mark.parametrize("version", ["v1", "unstable/io.element.msc4195"])
async def test_a_local_user_gets_a_token_through_synapse(
    synapse: LocalSynapse, service: tuple[LocalLivekitJwt, LocalLivekit], user: Account, version: str
) -> None:
    process, sfu = service
    before = len(sfu.calls_to("CreateRoom"))
    answer = await post(
        f"{synapse.url}/_matrix/client/{version}/rtc/livekit/get_token", BODY, user.access_token
    )
    assert answer.status_code == 200, answer.text
    claims = jwt.decode(answer.json()["jwt"], SECRET, algorithms=["HS256"])
    assert claims["sub"] == hashing.identity("v0.4.3", user.user_id, "DEV", "m-1")
    assert claims["video"]["room"] == hashing.room("v0.4.3", "!call:localhost", "m.call#ROOM")
    assert len(sfu.calls_to("CreateRoom")) == before + 1  # a local user: full access
    assert user.access_token not in process.log.read_text()


async def test_synapse_refuses_without_a_login_and_the_service_without_synapse(
    synapse: LocalSynapse, service: tuple[LocalLivekitJwt, LocalLivekit], user: Account
) -> None:
    process, _ = service
    path = "/_matrix/client/v1/rtc/livekit/get_token"
    assert (await post(synapse.url + path, BODY)).status_code == 401  # Synapse: no access token
    # straight at the service: a user's access token is not the hs_token; a forged header is ignored
    direct = await post(process.url + path, BODY, user.access_token)
    assert direct.status_code == 401
    async with httpx.AsyncClient(timeout=30) as client:
        forged = await client.post(process.url + path, json=BODY, headers={
            "Authorization": f"Bearer {HS_TOKEN}", "X-Matrix-User-Identifier": "@someone:elsewhere.example"})  # fmt: skip
    assert forged.status_code == 401
    claimed = {**BODY, "member": {**BODY["member"], "claimed_user_id": "@other:" + synapse.server_name}}
    assert (await post(synapse.url + path, claimed, user.access_token)).status_code == 401
    missing = await post(
        synapse.url + path, {"room_id": "!r:x", "slot_id": "s", "member": {"id": "m"}}, user.access_token
    )
    assert missing.status_code == 400
    assert missing.json()["errcode"] == "M_BAD_JSON"
