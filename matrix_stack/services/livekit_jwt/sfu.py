"""The SFU's RoomService, spoken as LiveKit's server speaks it: Twirp, `POST
{api}/twirp/livekit.RoomService/<Method>` with a protobuf body and a bearer token signed for the call;
an error is JSON `{"code", "msg"}` (a plain-text 401 for a refused token).

Over one kept-alive aiohttp session, as the egress (connections.py says why aiohttp): livekit-api's
client for three methods would load its whole SDK, its failover and regions (LiveKit Cloud's)."""

from __future__ import annotations

import json
from typing import TypeVar

import aiohttp
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as rooms

from matrix_stack.services.livekit_jwt import tokens

PREFIX = "/twirp/livekit.RoomService/"
TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=5.0)  # a CreateRoom holds up a token request
M = TypeVar("M", bound=Message)


class TwirpError(Exception):
    """The SFU answered an error (`code` is Twirp's: "not_found", "unauthenticated", ...) or could
    not be asked ("unavailable")."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _error(status: int, content: bytes) -> TwirpError:
    try:
        body = json.loads(content)
        code, message = str(body["code"]), str(body.get("msg", ""))
    except (ValueError, KeyError, TypeError):  # not Twirp's JSON: a proxy's page, a plain 401
        code = "unauthenticated" if status == 401 else "unknown"
        message = f"HTTP {status}"
    return TwirpError(code, message)


class RoomService:
    """Made and closed inside the running loop (the service's start and stop)."""

    def __init__(self, url: str, key: str, secret: str) -> None:
        self._key, self._secret = key, secret
        self._base = url.rstrip("/") + PREFIX
        self._http = aiohttp.ClientSession(
            timeout=TIMEOUT, trust_env=False, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._http.close()

    async def _call(self, method: str, request: Message, answer: type[M], token: str) -> M:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/protobuf"}
        try:
            async with self._http.post(
                self._base + method, data=request.SerializeToString(), headers=headers
            ) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TwirpError(
                "unavailable", f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from None
        if status != 200:
            raise _error(status, content)
        message = answer()
        try:
            message.ParseFromString(content)
        except DecodeError:
            raise TwirpError("malformed", f"{method}: not a {answer.__name__}") from None
        return message

    async def create_room(self, name: str, *, empty_timeout: int, departure_timeout: int) -> models.Room:
        """Idempotent on the SFU: an existing room is answered as it is."""
        request = rooms.CreateRoomRequest(
            name=name, empty_timeout=empty_timeout, departure_timeout=departure_timeout
        )
        return await self._call("CreateRoom", request, models.Room, self._token(room_create=True))

    async def get_participant(self, room: str, identity: str) -> models.ParticipantInfo:
        request = rooms.RoomParticipantIdentity(room=room, identity=identity)
        answer = models.ParticipantInfo
        return await self._call("GetParticipant", request, answer, self._token(room_admin_of=room))

    async def list_participants(self, room: str) -> rooms.ListParticipantsResponse:
        request = rooms.ListParticipantsRequest(room=room)
        answer = rooms.ListParticipantsResponse
        return await self._call("ListParticipants", request, answer, self._token(room_admin_of=room))

    def _token(self, *, room_create: bool = False, room_admin_of: str | None = None) -> str:
        return tokens.service(self._key, self._secret, room_create=room_create, room_admin_of=room_admin_of)
