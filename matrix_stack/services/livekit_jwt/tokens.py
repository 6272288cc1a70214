"""LiveKit's JWTs, as its server reads them: HS256 with the API secret, `iss` the API key, the grants
under `video` in camelCase with unset ones left out (the SFU defaults `canPublishData` to
`canPublish`), `nbf` now and `exp` a TTL later.

Three kinds: the participant's access token as lk-jwt-service mints it, the short service token a
RoomService call carries, and the SFU's signed webhooks, checked here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import jwt

ALGORITHM = "HS256"
SERVICE_TTL = 600  # seconds: a RoomService call's token is signed for that one call
LEEWAY = 60  # seconds of clock skew accepted on a webhook's token, as livekit's verifier allows


class BadSignature(Exception):
    """A webhook LiveKit did not sign (the message says why, never the token)."""


def _signed(key: str, secret: str, video: dict[str, Any], *, identity: str, ttl: int) -> str:
    now = int(time.time())
    claims = {"video": video, "sub": identity, "iss": key, "nbf": now, "exp": now + ttl}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint(key: str, secret: str, identity: str, room: str, *, ttl: int, can_update_own_metadata: bool) -> str:
    """The access token lk-jwt-service gives: join this room, publish and subscribe."""
    if not identity or not room:
        raise ValueError("identity and room must be set when joining a room")
    video: dict[str, Any] = {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True}
    if can_update_own_metadata:
        video["canUpdateOwnMetadata"] = True
    return _signed(key, secret, video, identity=identity, ttl=ttl)


def service(key: str, secret: str, *, room_create: bool = False, room_admin_of: str | None = None) -> str:
    """A RoomService call's bearer token: roomCreate for CreateRoom, roomAdmin of one room to look
    at its participants (the grants livekit's own server SDKs sign for these calls)."""
    video: dict[str, Any] = {}
    if room_create:
        video["roomCreate"] = True
    if room_admin_of is not None:
        video |= {"roomAdmin": True, "room": room_admin_of}
    return _signed(key, secret, video, identity="", ttl=SERVICE_TTL)


def check_webhook(key: str, secret: str, body: bytes, authorization: str) -> None:
    """A webhook is LiveKit's when its Authorization is a token signed with our secret, issued by our
    key, whose `sha256` claim is the body's SHA-256; raises BadSignature otherwise."""
    token = authorization.removeprefix("Bearer ").strip()
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], leeway=LEEWAY, issuer=key,
            options={"require": ["iss", "exp", "sha256"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        raise BadSignature(f"token: {exc}") from None
    claimed = claims["sha256"]
    try:
        expected = base64.b64decode(claimed, validate=True) if isinstance(claimed, str) else b""
    except ValueError:
        expected = b""
    if not hmac.compare_digest(hashlib.sha256(body).digest(), expected):
        raise BadSignature("the body's sha256 is not the signed one")
