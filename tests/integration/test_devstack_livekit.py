"""The devstack's LiveKit RoomService stand-in against livekit-api's real client, and a real Synapse
serving federation over TLS as `127.0.0.1:<port>`: the two ends livekit-jwt talks to."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx
import pytest
from livekit import api
from livekit.api.twirp_client import TwirpClient
from livekit.protocol import models, room

from devstack.livekit import LocalLivekit
from devstack.processes import free_port
from devstack.synapse import LocalSynapse, openid_token, register
from matrix_stack.shared.route.processes import free_ports, port_open

PASSWORD = "correct horse battery staple"
SECRET = "a-devstack-secret-of-forty-characters-xx"  # 32+: PyJWT warns about shorter HMAC keys


@pytest.fixture(scope="module")
def livekit() -> Iterator[LocalLivekit]:
    with LocalLivekit("devkey", SECRET) as server:
        yield server


@pytest.fixture
async def lkapi(livekit: LocalLivekit) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(url=livekit.url, api_key=livekit.key, api_secret=livekit.secret)
    yield client
    await client.aclose()


def _token(livekit: LocalLivekit, grants: api.VideoGrants, secret: str | None = None) -> str:
    return api.AccessToken(livekit.key, secret or livekit.secret).with_grants(grants).to_jwt()


async def test_create_room_is_idempotent_and_recorded(livekit: LocalLivekit, lkapi: api.LiveKitAPI) -> None:
    request = api.CreateRoomRequest(name="!room:example.org", empty_timeout=300, departure_timeout=20)
    first = await lkapi.room.create_room(request)
    again = await lkapi.room.create_room(api.CreateRoomRequest(name="!room:example.org", empty_timeout=5))

    assert first.sid.startswith("RM_")
    assert len(first.sid) == 15
    assert (first.name, first.empty_timeout, first.departure_timeout) == ("!room:example.org", 300, 20)
    assert abs(first.creation_time - time.time()) < 60
    assert again == first  # the existing room, unchanged: same sid, creation_time and timeouts

    call = livekit.calls_to("CreateRoom")[-2]
    assert isinstance(call.request, room.CreateRoomRequest)
    assert (call.request.name, call.request.empty_timeout, call.request.departure_timeout) == (
        "!room:example.org", 300, 20,
    )  # fmt: skip
    assert call.claims is not None
    assert call.claims.video is not None
    assert call.claims.video.room_create
    assert call.error is None


async def test_list_and_delete_rooms(livekit: LocalLivekit, lkapi: api.LiveKitAPI) -> None:
    for name in ("list-a", "list-b"):
        await lkapi.room.create_room(api.CreateRoomRequest(name=name))
    listed = await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert {"list-a", "list-b"} <= {r.name for r in listed.rooms}
    only = await lkapi.room.list_rooms(api.ListRoomsRequest(names=["list-b", "absent"]))
    assert [r.name for r in only.rooms] == ["list-b"]

    await lkapi.room.delete_room(api.DeleteRoomRequest(room="list-a"))
    assert "list-a" not in livekit.rooms
    with pytest.raises(api.TwirpError) as missing:
        await lkapi.room.delete_room(api.DeleteRoomRequest(room="list-a"))
    assert (missing.value.code, missing.value.status) == ("not_found", 404)
    assert missing.value.message == "requested room does not exist"


async def test_a_room_has_no_participants(lkapi: api.LiveKitAPI) -> None:
    await lkapi.room.create_room(api.CreateRoomRequest(name="quiet"))
    listed = await lkapi.room.list_participants(api.ListParticipantsRequest(room="quiet"))
    assert list(listed.participants) == []
    with pytest.raises(api.TwirpError) as missing:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room="quiet", identity="@a:b:DEV"))
    assert (missing.value.code, missing.value.status) == ("not_found", 404)


async def test_a_wrong_secret_is_refused_before_twirp(livekit: LocalLivekit) -> None:
    """livekit-server's auth middleware answers a token it cannot verify with a plain-text 401,
    not Twirp JSON, so livekit-api reports code "unknown" with status 401."""
    before = len(livekit.calls)
    client = api.LiveKitAPI(url=livekit.url, api_key=livekit.key, api_secret="x" * 40)
    try:
        with pytest.raises(api.TwirpError) as refused:
            await client.room.create_room(api.CreateRoomRequest(name="never"))
    finally:
        await client.aclose()
    assert (refused.value.status, refused.value.code) == (401, "unknown")
    assert len(livekit.calls) == before
    assert "never" not in livekit.rooms

    token = _token(livekit, api.VideoGrants(room_create=True), secret="y" * 40)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{livekit.api_url}/twirp/livekit.RoomService/CreateRoom",
            content=room.CreateRoomRequest(name="never").SerializeToString(),
            headers={"Content-Type": "application/protobuf", "Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 401
    assert response.text.startswith("invalid authorization token")


@pytest.mark.parametrize(
    ("method", "request_message", "response_class", "grants"),
    [
        ("CreateRoom", room.CreateRoomRequest(name="x"), models.Room, api.VideoGrants(room_list=True)),
        ("CreateRoom", room.CreateRoomRequest(name="x"), models.Room, None),
        ("ListRooms", room.ListRoomsRequest(), room.ListRoomsResponse, api.VideoGrants(room_create=True)),
        ("ListParticipants", room.ListParticipantsRequest(room="x"), room.ListParticipantsResponse,
         api.VideoGrants(room_admin=True, room="another")),
    ],
)  # fmt: skip
async def test_a_missing_grant_is_unauthenticated(
    livekit: LocalLivekit,
    method: str,
    request_message: room.CreateRoomRequest,
    response_class: type[models.Room],
    grants: api.VideoGrants | None,
) -> None:
    """A verified token without the method's grant: Twirp `unauthenticated` "permissions denied"."""
    headers = {"Authorization": f"Bearer {_token(livekit, grants)}"} if grants else {}
    async with aiohttp.ClientSession() as session:
        client = TwirpClient(session, livekit.url, "livekit", failover=False)
        with pytest.raises(api.TwirpError) as refused:
            await client.request("RoomService", method, request_message, headers, response_class)
    assert (refused.value.code, refused.value.status) == ("unauthenticated", 401)
    assert refused.value.message == "permissions denied"
    assert livekit.calls[-1].method == method
    assert livekit.calls[-1].error == "unauthenticated"
    assert "x" not in livekit.rooms


async def test_twirp_json_routes_and_malformed_bodies(livekit: LocalLivekit) -> None:
    auth = {"Authorization": f"Bearer {_token(livekit, api.VideoGrants(room_create=True))}"}
    base = f"{livekit.api_url}/twirp/livekit.RoomService"
    async with httpx.AsyncClient() as http:
        created = await http.post(f"{base}/CreateRoom", json={"name": "json-room"}, headers=auth)
        assert created.status_code == 200, created.text
        assert created.headers["content-type"] == "application/json"
        assert created.json()["name"] == "json-room"
        assert created.json()["empty_timeout"] == 300

        garbage = await http.post(
            f"{base}/CreateRoom",
            content=b"\xff\xff",
            headers={**auth, "Content-Type": "application/protobuf"},
        )
        assert (garbage.status_code, garbage.json()["code"]) == (400, "malformed")
        empty = await http.post(f"{base}/CreateRoom", json={"name": ""}, headers=auth)
        assert (empty.status_code, empty.json()["code"]) == (400, "invalid_argument")
        wrong_type = await http.post(
            f"{base}/CreateRoom", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert (wrong_type.status_code, wrong_type.json()["code"]) == (404, "bad_route")
        unknown = await http.post(f"{base}/Nope", json={})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "bad_route")
        get = await http.get(f"{base}/ListRooms")
        assert (get.status_code, get.json()["code"]) == (404, "bad_route")


def test_runs_as_a_program() -> None:
    """`python -m devstack.livekit`: nothing on stdout, logs on stderr, exit 0 on TERM."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.livekit", "--port", str(port), "--key", "k",
         "--secret", SECRET],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not port_open(port):
            assert process.poll() is None, "the stand-in exited"
            assert time.monotonic() < deadline, "the stand-in did not start"
            time.sleep(0.05)
        token = api.AccessToken("k", SECRET).with_grants(api.VideoGrants(room_list=True)).to_jwt()
        response = httpx.post(
            f"http://127.0.0.1:{port}/twirp/livekit.RoomService/ListRooms",
            content=room.ListRoomsRequest().SerializeToString(),
            headers={"Content-Type": "application/protobuf", "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert list(room.ListRoomsResponse.FromString(response.content).rooms) == []
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert stdout == b""
    assert b"ListRooms" in stderr


# -- a homeserver named 127.0.0.1:<port>, serving federation (and OpenID userinfo) over TLS --


@pytest.fixture(scope="module")
def federating_synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    port, federation_port = free_ports(2)
    server = LocalSynapse.federating(tmp_path_factory.mktemp("synapse-federating"), port, federation_port)
    server.start()
    yield server
    server.stop()


async def test_openid_userinfo_over_tls(federating_synapse: LocalSynapse, http: httpx.AsyncClient) -> None:
    synapse = federating_synapse
    server_name = f"127.0.0.1:{synapse.federation_port}"
    account = await register(synapse, http, "caller", PASSWORD)
    assert account.user_id == f"@caller:{server_name}"

    token = await openid_token(account)
    assert token["token_type"] == "Bearer"
    assert token["matrix_server_name"] == server_name
    assert token["expires_in"] > 0
    assert token["access_token"]

    trusted = ssl.create_default_context(cafile=os.fspath(synapse.federation_tls.ca))
    async with httpx.AsyncClient(verify=trusted, timeout=10) as federation:
        userinfo = f"https://{server_name}/_matrix/federation/v1/openid/userinfo"
        found = await federation.get(userinfo, params={"access_token": token["access_token"]})
        assert found.status_code == 200, found.text
        assert found.json() == {"sub": account.user_id}
        wrong = await federation.get(userinfo, params={"access_token": "not-a-token"})
        assert wrong.status_code == 401
        assert wrong.json()["errcode"] == "M_UNKNOWN_TOKEN"


async def test_the_federation_certificate_is_only_trusted_with_its_ca(
    federating_synapse: LocalSynapse,
) -> None:
    async with httpx.AsyncClient(timeout=10) as untrusting:
        with pytest.raises(httpx.ConnectError):
            await untrusting.get(f"{federating_synapse.federation_url}/_matrix/federation/v1/version")
