"""Megolm, the room channel: the session the bot sends with (and when it rotates), the encrypted
event it makes, room keys members send it, and room events opened with those or its own keys.

Plain functions over the kept `CryptoState`; sharing a session's key with devices is Olm's part.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import vodozemac

from matrix_stack.shared.matrix.crypto.canonical import canonical
from matrix_stack.shared.matrix.crypto.devices import MEGOLM
from matrix_stack.shared.matrix.crypto.state import CryptoState, Inbound, RoomKey
from matrix_stack.shared.matrix.events import RoomEvent

log = logging.getLogger(__name__)

ROTATION_MS = 7 * 24 * 3600 * 1000  # the spec's defaults when the room names none
ROTATION_MSGS = 100


@dataclass
class Outbound:
    session: vodozemac.GroupSession
    created: float = field(default_factory=time.time)
    count: int = 0
    shared: set[tuple[str, str, str]] = field(default_factory=set)  # (user, device, curve25519)

    def expired(self, encryption: dict[str, Any]) -> bool:
        period_ms = encryption.get("rotation_period_ms", ROTATION_MS)
        period_msgs = encryption.get("rotation_period_msgs", ROTATION_MSGS)
        age_ms = (time.time() - self.created) * 1000
        return (isinstance(period_msgs, int) and self.count >= max(period_msgs, 1)) or (
            isinstance(period_ms, int) and age_ms >= period_ms
        )


def new_session(state: CryptoState, room_id: str) -> Outbound:
    """A new session for the room; its room key kept (from the first index) for later readers."""
    out = Outbound(vodozemac.GroupSession())
    state.room_keys[out.session.session_id] = RoomKey(
        room_id, out.session.session_key.to_base64(), out.created, set()
    )
    state.changed_room_key(out.session.session_id)
    return out


def encrypt(
    state: CryptoState, out: Outbound, device_id: str, room_id: str, event_type: str, content: dict[str, Any]
) -> dict[str, Any]:
    """The `m.room.encrypted` content of one message, counted towards the session's rotation."""
    plaintext = canonical({"type": event_type, "content": content, "room_id": room_id})
    ciphertext = out.session.encrypt(plaintext).to_base64()
    out.count += 1
    encrypted: dict[str, Any] = {
        "algorithm": MEGOLM,
        "sender_key": state.account.curve25519_key.to_base64(),
        "ciphertext": ciphertext,
        "session_id": out.session.session_id,
        "device_id": device_id,
    }
    relation = content.get("m.relates_to")
    if relation is not None:  # relations stay in the clear, so servers can aggregate them
        encrypted["m.relates_to"] = relation
    return encrypted


def keep_room_key(state: CryptoState, me: str, sender: str, sender_key: Any, opened: dict[str, Any]) -> None:
    """A member's device shared its room key with the bot: kept, to read what it sends."""
    key = opened.get("content", {})
    if not isinstance(sender_key, str) or key.get("algorithm") != MEGOLM:
        return
    if opened.get("sender") != sender or opened.get("recipient") != me:
        return
    session_id, room_id = key.get("session_id"), key.get("room_id")
    if not isinstance(session_id, str) or not isinstance(room_id, str) or session_id in state.inbound:
        return
    try:
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(str(key.get("session_key"))))
    except (vodozemac.SessionKeyDecodeException, ValueError) as exc:
        log.warning("a room key sent to the bot is malformed", extra={"user": sender, "error": str(exc)})
        return
    state.inbound[session_id] = Inbound(room_id, sender_key, session)
    state.changed_inbound(session_id)


def in_clear(state: CryptoState | None, room_id: str, raw: dict[str, Any]) -> RoomEvent | None:
    """A room event in the clear: decrypted with a room key the bot holds (None if it holds none)."""
    content = raw.get("content")
    event_id, sender = raw.get("event_id"), raw.get("sender")
    if not isinstance(content, dict) or not isinstance(event_id, str) or not isinstance(sender, str):
        return None
    kind, encrypted = str(raw.get("type")), False
    if kind == "m.room.encrypted":
        opened = decrypt(state, room_id, content) if state is not None else None
        if opened is None:
            log.warning(
                "an encrypted event the bot holds no key for",
                extra={"room": room_id, "event_id": event_id},
            )
            return None
        kind, inner, encrypted = str(opened.get("type")), opened.get("content"), True
        if not isinstance(inner, dict):
            return None
        if "m.relates_to" in content and "m.relates_to" not in inner:
            inner = {**inner, "m.relates_to": content["m.relates_to"]}  # relations travel in the clear
        content = inner
    redacts = raw.get("redacts") or content.get("redacts")
    return RoomEvent(room_id, event_id, sender, kind, content, int(raw.get("origin_server_ts", 0)),
                     redacts if isinstance(redacts, str) else None, encrypted)  # fmt: skip


def decrypt(state: CryptoState, room_id: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """An `m.room.encrypted` event's payload, opened with a kept room key; None when none opens it."""
    session_id = content.get("session_id")
    if not isinstance(session_id, str) or content.get("algorithm") != MEGOLM:
        return None
    inbound = state.inbound.get(session_id)
    session = inbound.session if inbound is not None and inbound.room_id == room_id else None
    if session is None and session_id in state.room_keys and state.room_keys[session_id].room_id == room_id:
        # one of the bot's own messages: its room key from the first index opens it
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(state.room_keys[session_id].session_key))
    if session is None:
        return None
    try:
        decrypted = session.decrypt(vodozemac.MegolmMessage.from_base64(str(content.get("ciphertext"))))
    except (vodozemac.MegolmDecryptionException, vodozemac.DecodeException, ValueError):
        return None
    opened = json.loads(decrypted.plaintext)
    if not isinstance(opened, dict) or opened.get("room_id") != room_id:
        return None  # a message replayed from another room
    return opened
