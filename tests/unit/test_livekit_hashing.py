"""Rooms and identities against the reference vectors (lk-jwt-service's Go tests, MSC4195's appendix,
matrix-js-sdk's test), every scheme; and Go's JSON bytes for the characters it escapes."""

from __future__ import annotations

import pytest

from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.services.livekit_jwt.requests import TokenRequest

ROOM = "!testRoom:example.com"
USER, DEVICE, MEMBER = "@user:example.com", "DEVICE", "member_test_id"


@pytest.mark.parametrize(
    ("scheme", "room_id", "slot_id", "expected"),
    [
        ("v0.4.3", "!roomid:example.com", "slot1234", "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"),
        ("v0.4.0", ROOM, "m.call#ROOM", "a8a52ff53b6c737108561cff4dd9552e9478d76a949acbedfb2a036a7062017c"),
        ("v0.4.1", ROOM, "m.call#ROOM", "qKUv9Ttsc3EIVhz/TdlVLpR412qUmsvt+yoDanBiAXw"),
        ("v0.4.3", ROOM, "m.call#ROOM", "/lBTLIGR4z7th3MC5UJfOWFVTGaX5H47h23RgN7n1aw"),
        # Go escapes <, >, & where JSON.stringify would not: the service hashes Go's bytes
        ("v0.4.3", "!a<b>&c:example.com", "slot", "svMENeEjtsrLhSAs81XT1XNdNZTEi/jlXJM71P/IAXo"),
    ],
)
def test_room(scheme: hashing.HashScheme, room_id: str, slot_id: str, expected: str) -> None:
    assert hashing.room(scheme, room_id, slot_id) == expected


@pytest.mark.parametrize(
    ("scheme", "user", "device", "member", "expected"),
    [
        (
            "v0.4.3",
            "@alice:example.com",
            "DEVICE123",
            "memberABC",
            "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU",
        ),
        ("v0.4.1", USER, DEVICE, MEMBER, "3DXZDOUNEs8ix60kq8QFilywWdzyj9RFcHZyVqniuek"),
        ("v0.4.3", USER, DEVICE, MEMBER, "ZNzrBi5FSWmbFyArMjLlcYSoEx2RI+NaSvA8IkigLVo"),
        ("v0.4.0", USER, DEVICE, MEMBER, MEMBER),
    ],
)
def test_identity(scheme: hashing.HashScheme, user: str, device: str, member: str, expected: str) -> None:
    assert hashing.identity(scheme, user, device, member) == expected


def test_the_msc_two_element_identity_is_not_what_clients_compute() -> None:
    # MSC4195's appendix hashes [user, member]; lk-jwt-service and matrix-js-sdk hash three elements
    assert hashing.identity("v0.4.3", "@alice:example.com", "DEVICE123", "memberABC") != (
        "M3VnsLXrkbxIDINXO64u8PZzFyD9ZYFiQULR2dshWYs"
    )


def test_legacy_room_and_identity() -> None:
    assert hashing.legacy_room("v0.4.0", ROOM) == ROOM
    assert hashing.legacy_room("v0.4.3", ROOM) == hashing.room("v0.4.3", ROOM, "m.call#ROOM")
    assert hashing.legacy_identity(USER, DEVICE) == "@user:example.com:DEVICE"


def test_go_json_escapes_what_go_escapes() -> None:
    assert hashing.go_json(["<a>&", "\u2028\u2029", "é"]) == '["\\u003ca\\u003e\\u0026","\\u2028\\u2029","é"]'


def test_unpaired_surrogates_read_as_go_reads_them() -> None:
    # Go's JSON decoder turns an unpaired \ud800 into U+FFFD; the hash must be over the same bytes
    body = TokenRequest.model_validate({"room_id": "!a\ud800b:example.com", "slot_id": "s"})
    assert body.room_id == "!a\ufffdb:example.com"
    assert hashing.room("v0.4.1", body.room_id, body.slot_id) == hashing.room(
        "v0.4.1", "!a\ufffdb:example.com", "s"
    )
