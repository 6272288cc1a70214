"""A stand-in for the LiveKit SFU's RoomService on loopback (the SFU itself cannot run here).

It speaks the server's wire protocol: Twirp over HTTP, `POST /twirp/livekit.RoomService/<Method>`
with protobuf (or Twirp's JSON) bodies from livekit-protocol, errors as Twirp JSON. Authentication
follows livekit-server: its HTTP middleware verifies the bearer JWT against the key/secret and
answers a bad one with a plain-text 401 (not Twirp JSON: livekit-api reports it as code "unknown",
status 401); the methods then check the grants and refuse with Twirp `unauthenticated` "permissions
denied" (401). Grants as livekit-server checks them: `roomCreate` for CreateRoom and DeleteRoom,
`roomList` for ListRooms, `roomAdmin` on the named room for the participant methods.

Rooms live in memory and have no participants. Every call that reaches a method is recorded.

    python -m devstack.livekit --port 7880 --key devkey --secret <32+ characters>
"""

from __future__ import annotations

import argparse
import logging
import secrets
import signal
import socket
import string
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jwt
import uvicorn
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.api.access_token import Claims, TokenVerifier
from livekit.protocol import models, room
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from devstack.processes import STAND_IN_KEEP_ALIVE

log = logging.getLogger("devstack.livekit")  # also when run as __main__

SERVICE_PREFIX = "/twirp/livekit.RoomService/"
# livekit-server's defaults (config.go) for a CreateRoomRequest that leaves them 0
DEFAULT_EMPTY_TIMEOUT = 300
DEFAULT_DEPARTURE_TIMEOUT = 20
MAX_ROOM_NAME_LENGTH = 256
_SID_ALPHABET = string.ascii_letters + string.digits
# Twirp's error codes and the HTTP statuses its servers send with them
_STATUS = {"bad_route": 404, "malformed": 400, "invalid_argument": 400, "unauthenticated": 401,
           "permission_denied": 403, "not_found": 404, "unimplemented": 501, "internal": 500}  # fmt: skip


class TwirpError(Exception):
    def __init__(self, code: str, msg: str, meta: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {msg}")
        self.code, self.msg, self.meta = code, msg, meta or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"code": self.code, "msg": self.msg}
        if self.meta:
            body["meta"] = self.meta
        return JSONResponse(body, status_code=_STATUS.get(self.code, 500))


class _Refused(Exception):
    """A token livekit-server's HTTP middleware turns away, before Twirp sees the request."""


@dataclass(frozen=True)
class Call:
    """One request that reached a RoomService method."""

    method: str  # "CreateRoom"
    request: Message  # the decoded request message
    claims: Claims | None  # the verified token's claims; None when no token was sent
    error: str | None = None  # the Twirp code answered, None on success


Handler = Callable[[Any, Claims | None], Message]


def _new_sid() -> str:
    return "RM_" + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12))


def _ensure(claims: Claims | None, grant: str, room_name: str | None = None) -> None:
    """livekit-server's Ensure*Permission: the grant is set (and names the room, for roomAdmin)."""
    video = claims.video if claims else None
    allowed = video is not None and bool(getattr(video, grant))
    if allowed and room_name is not None:
        allowed = video is not None and video.room == room_name
    if not allowed:
        raise TwirpError("unauthenticated", "permissions denied")


class LocalLivekit:
    """The RoomService on a free loopback port (or `port`), served by uvicorn in a thread."""

    def __init__(self, key: str = "devkey", secret: str | None = None, *, port: int = 0) -> None:
        self.key = key
        # 32+ bytes: PyJWT warns about shorter HMAC keys
        self.secret = secret or secrets.token_urlsafe(32)
        self._verifier = TokenVerifier(self.key, self.secret)
        self._requested_port = port
        self._lock = threading.Lock()
        self._rooms: dict[str, models.Room] = {}
        self._calls: list[Call] = []
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._methods: dict[str, tuple[type[Message], Handler]] = {
            "CreateRoom": (room.CreateRoomRequest, self._create_room),
            "ListRooms": (room.ListRoomsRequest, self._list_rooms),
            "DeleteRoom": (room.DeleteRoomRequest, self._delete_room),
            "ListParticipants": (room.ListParticipantsRequest, self._list_participants),
            "GetParticipant": (room.RoomParticipantIdentity, self._get_participant),
            "RemoveParticipant": (room.RoomParticipantIdentity, self._remove_participant),
        }

    # -- addresses and state ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("LocalLivekit is not started")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """What clients are told (LIVEKIT_URL)."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    @property
    def rooms(self) -> dict[str, models.Room]:
        with self._lock:
            return {name: _copy(found) for name, found in self._rooms.items()}

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        self._socket = sock
        config = uvicorn.Config(self, lifespan="off", log_config=None, access_log=False,
                                server_header=False, timeout_keep_alive=STAND_IN_KEEP_ALIVE)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-livekit", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"LiveKit stand-in did not start on port {self._requested_port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> LocalLivekit:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- HTTP ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        try:
            claims = self._authenticate(request)
        except _Refused as refused:  # livekit-server's middleware: plain text, not Twirp
            return PlainTextResponse(str(refused), status_code=401)
        path = request.url.path
        try:
            handler, message, is_json = await self._decode(request, path)
        except TwirpError as error:
            return error.response()
        method = path.removeprefix(SERVICE_PREFIX)
        try:
            answer = handler(message, claims)
        except TwirpError as error:
            self._record(Call(method, message, claims, error.code))
            log.info("%s %s -> %s %s", method, _brief(message), error.code, error.msg)
            return error.response()
        self._record(Call(method, message, claims))
        log.info("%s %s -> ok", method, _brief(message))
        if is_json:
            body = json_format.MessageToJson(
                answer,
                indent=None,
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
            return Response(body, media_type="application/json")
        return Response(answer.SerializeToString(), media_type="application/protobuf")

    def _authenticate(self, request: Request) -> Claims | None:
        """The bearer token's verified claims, None without one; _Refused for a bad one."""
        header = request.headers.get("authorization", "")
        if header:
            if not header.startswith("Bearer "):
                raise _Refused("invalid authorization header. Must start with Bearer ")
            token = header.removeprefix("Bearer ")
        else:
            token = request.query_params.get("access_token", "")
        if not token:
            return None
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss", "")
        except jwt.PyJWTError:
            raise _Refused("invalid authorization token") from None
        if issuer != self.key:
            raise _Refused("invalid API key")
        try:
            return self._verifier.verify(token)
        except jwt.PyJWTError as error:
            raise _Refused(f"invalid authorization token: {error}") from None

    async def _decode(self, request: Request, path: str) -> tuple[Handler, Message, bool]:
        """Twirp's routing and decoding: the handler, the request message, and whether it is JSON."""
        route = f"{request.method} {path}"
        if request.method != "POST":
            raise TwirpError("bad_route", f'unsupported method "{request.method}" (only POST is allowed)',
                             {"twirp_invalid_route": route})  # fmt: skip
        name = path.removeprefix(SERVICE_PREFIX) if path.startswith(SERVICE_PREFIX) else ""
        found = self._methods.get(name)
        if found is None:
            if name in _ALL_METHODS:
                raise TwirpError("unimplemented", f"{name} is not in the stand-in")
            raise TwirpError("bad_route", f'no handler for path "{path}"', {"twirp_invalid_route": route})
        message_class, handler = found
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        body = await request.body()
        message = message_class()
        if kind == "application/protobuf":
            try:
                message.ParseFromString(body)
            except DecodeError:
                raise TwirpError("malformed", "the protobuf request could not be decoded") from None
            return handler, message, False
        if kind == "application/json":
            try:
                json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
            except (json_format.ParseError, UnicodeDecodeError):
                raise TwirpError("malformed", "the json request could not be decoded") from None
            return handler, message, True
        raise TwirpError(
            "bad_route", f'unexpected Content-Type: "{content_type}"', {"twirp_invalid_route": route}
        )

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    # -- RoomService methods ------------------------------------------------------------------

    def _create_room(self, request: room.CreateRoomRequest, claims: Claims | None) -> models.Room:
        _ensure(claims, "room_create")
        if not request.name:  # the stand-in's own check: a room needs a name
            raise TwirpError("invalid_argument", "no room name")
        if len(request.name) > MAX_ROOM_NAME_LENGTH:
            raise TwirpError(
                "invalid_argument", f"room name length exceeds limits: max length {MAX_ROOM_NAME_LENGTH}"
            )
        with self._lock:
            existing = self._rooms.get(request.name)
            if existing is None:
                now = time.time()
                existing = self._rooms[request.name] = models.Room(
                    sid=_new_sid(),
                    name=request.name,
                    empty_timeout=request.empty_timeout or DEFAULT_EMPTY_TIMEOUT,
                    departure_timeout=request.departure_timeout or DEFAULT_DEPARTURE_TIMEOUT,
                    max_participants=request.max_participants,
                    creation_time=int(now),
                    creation_time_ms=int(now * 1000),
                    metadata=request.metadata,
                )
            return _copy(existing)

    def _list_rooms(self, request: room.ListRoomsRequest, claims: Claims | None) -> room.ListRoomsResponse:
        _ensure(claims, "room_list")
        wanted = set(request.names)
        with self._lock:
            found = [_copy(r) for name, r in self._rooms.items() if not wanted or name in wanted]
        return room.ListRoomsResponse(rooms=found)

    def _delete_room(self, request: room.DeleteRoomRequest, claims: Claims | None) -> room.DeleteRoomResponse:
        _ensure(claims, "room_create")  # livekit-server asks for roomCreate here, not roomAdmin
        with self._lock:
            if self._rooms.pop(request.room, None) is None:
                raise TwirpError("not_found", "requested room does not exist")
        return room.DeleteRoomResponse()

    def _list_participants(
        self, request: room.ListParticipantsRequest, claims: Claims | None
    ) -> room.ListParticipantsResponse:
        _ensure(claims, "room_admin", request.room)
        return room.ListParticipantsResponse()

    def _get_participant(self, request: room.RoomParticipantIdentity, claims: Claims | None) -> Message:
        _ensure(claims, "room_admin", request.room)
        raise TwirpError("not_found", "participant does not exist")

    def _remove_participant(self, request: room.RoomParticipantIdentity, claims: Claims | None) -> Message:
        _ensure(claims, "room_admin", request.room)
        raise TwirpError("not_found", "participant not found")


_ALL_METHODS = frozenset(room.DESCRIPTOR.services_by_name["RoomService"].methods_by_name)


def _copy(message: models.Room) -> models.Room:
    copied = models.Room()
    copied.CopyFrom(message)
    return copied


def _brief(message: Message) -> str:
    return json_format.MessageToJson(message, indent=None, preserving_proto_field_name=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.livekit", description=__doc__)
    parser.add_argument("--port", type=int, default=7880)
    parser.add_argument("--key", default="devkey")
    parser.add_argument("--secret", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with LocalLivekit(args.key, args.secret, port=args.port) as livekit:
        log.info("LiveKit RoomService stand-in on %s (API key %s)", livekit.api_url, livekit.key)
        stopping.wait()


if __name__ == "__main__":
    main()
