"""Olm, the device-to-device channel room keys travel on: sessions started, messages sealed and opened.

Plain functions over the kept `CryptoState`; each records what it changed (an Olm session moves on
with every message) so the caller saves it before anything leaves the process.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from typing import Any

import vodozemac

from matrix_stack.shared.matrix.crypto.canonical import canonical, unpadded, verify
from matrix_stack.shared.matrix.crypto.devices import OLM, Device
from matrix_stack.shared.matrix.crypto.state import CryptoState

log = logging.getLogger(__name__)


def start_session(state: CryptoState, device: Device, key_objs: Iterable[Any]) -> bool:
    """An outbound session with `device` from the first of its claimed one-time keys it signed;
    False when none is."""
    for key_obj in key_objs:
        if not isinstance(key_obj, dict) or not verify(
            key_obj, device.user_id, f"ed25519:{device.device_id}", device.ed25519
        ):
            continue
        session = state.account.create_outbound_session(
            vodozemac.Curve25519PublicKey.from_base64(device.curve25519),
            vodozemac.Curve25519PublicKey.from_base64(key_obj["key"]),
        )
        state.olm[device.curve25519] = [session]
        state.changed_olm(device.curve25519)
        return True
    return False


def encrypt(
    state: CryptoState, me: str, my_device: str, device: Device, event_type: str, content: dict[str, Any]
) -> dict[str, Any]:
    """The `m.room.encrypted` to-device content carrying an event to `device` (which has a session)."""
    session = state.olm[device.curve25519][0]
    payload = {
        "type": event_type,
        "content": content,
        "sender": me,
        "sender_device": my_device,
        "keys": {"ed25519": state.account.ed25519_key.to_base64()},
        "recipient": device.user_id,
        "recipient_keys": {"ed25519": device.ed25519},
    }
    message_type, body = session.encrypt(canonical(payload)).to_parts()
    state.changed_olm(device.curve25519)
    return {
        "algorithm": OLM,
        "sender_key": state.account.curve25519_key.to_base64(),
        "ciphertext": {device.curve25519: {"type": message_type, "body": unpadded(body)}},
    }


def decrypt(state: CryptoState, sender: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """Open an Olm message to this device (a peer starting a session with us uses a one-time
    key: the account and session are kept). The bridges send only: what it held is logged."""
    mine = content.get("ciphertext", {}).get(state.account.curve25519_key.to_base64())
    sender_key = content.get("sender_key")
    if not isinstance(mine, dict) or not isinstance(sender_key, str):
        return None
    raw = _unb64(mine.get("body", ""))
    message = vodozemac.AnyOlmMessage.from_parts(int(mine.get("type", 1)), raw)
    sessions = state.olm.setdefault(sender_key, [])
    plaintext: bytes | None = None
    for session in sessions:
        try:
            plaintext = session.decrypt(message)
        except vodozemac.OlmDecryptionException:
            continue
        state.olm[sender_key] = [session] + [s for s in sessions if s is not session]
        break
    pre_key = message.to_pre_key()
    if plaintext is None and pre_key is not None:
        try:
            session, plaintext = state.account.create_inbound_session(
                vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
            )
        except (vodozemac.SessionCreationException, vodozemac.KeyException) as exc:
            log.warning(
                "an Olm message to the bot could not be opened", extra={"user": sender, "error": str(exc)}
            )
            return None
        state.olm[sender_key] = [session, *sessions]
        state.changed_account()
    if plaintext is None:
        log.warning("an Olm message to the bot could not be opened", extra={"user": sender})
        return None
    state.changed_olm(sender_key)
    opened: dict[str, Any] = json.loads(plaintext)
    log.debug("to-device message opened", extra={"user": sender, "type": opened.get("type")})
    return opened


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))
