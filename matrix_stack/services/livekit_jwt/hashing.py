"""The LiveKit room name and participant identity a token carries, by lk-jwt-service version.

Clients key end-to-end media keys by the identity, so it must equal what the deployed Element Call
computes (matrix-js-sdk `computeRtcIdentityRaw`: v0.4.3's JSON arrays); the room name only has to be
the same for every token of one call.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence

from matrix_stack.services.livekit_jwt.config import HashScheme

LEGACY_SLOT = "m.call#ROOM"  # what /sfu/get's legacy body implies
# Go's encoding/json escapes these in strings; clients hash Go's bytes, so must we.
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: object) -> str:
    """What Go's json.Marshal writes for strings, lists and objects of them: compact, UTF-8 left as
    it is, HTML characters and the two line separators escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for character, escape in _GO_ESCAPES:
        text = text.replace(character, escape)
    return text


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def _array(items: Sequence[str]) -> bytes:
    return go_json(list(items)).encode("utf-8", "replace")


def room(scheme: HashScheme, room_id: str, slot_id: str) -> str:
    if scheme == "v0.4.0":
        return hashlib.sha256(f"{room_id}|{slot_id}".encode()).hexdigest()
    if scheme == "v0.4.1":
        return _b64_sha256(f"{room_id}|{slot_id}".encode())
    return _b64_sha256(_array([room_id, slot_id]))


def identity(scheme: HashScheme, user_id: str, device_id: str, member_id: str) -> str:
    if scheme == "v0.4.0":
        return member_id
    if scheme == "v0.4.1":
        return _b64_sha256(f"{user_id}|{device_id}|{member_id}".encode())
    return _b64_sha256(_array([user_id, device_id, member_id]))


def legacy_room(scheme: HashScheme, room_id: str) -> str:
    """The room of an /sfu/get token: the Matrix room id itself up to v0.4.0, else hashed with the
    legacy slot."""
    return room_id if scheme == "v0.4.0" else room(scheme, room_id, LEGACY_SLOT)


def legacy_identity(user_id: str, device_id: str) -> str:
    """`user:device`, what legacy m.call.member clients key media by, in every version."""
    return f"{user_id}:{device_id}"
