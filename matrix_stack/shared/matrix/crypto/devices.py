"""Members' devices as `/keys/query` describes them, checked, and who of them gets room keys."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from matrix_stack.shared.matrix.crypto.canonical import verify

log = logging.getLogger(__name__)

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"

# members: every device of every joined member; cross-signed: only devices their owner signed
# (MSC4153); allowlist: every device of the listed users and servers.
Sharing = Literal["members", "cross-signed", "allowlist"]


@dataclass(frozen=True)
class Device:
    user_id: str
    device_id: str
    curve25519: str
    ed25519: str
    signed_by_owner: bool

    def record(self) -> dict[str, Any]:
        return {"curve": self.curve25519, "ed": self.ed25519, "signed": self.signed_by_owner}

    @classmethod
    def from_record(cls, user_id: str, device_id: str, record: dict[str, Any]) -> Device:
        return cls(user_id, device_id, record["curve"], record["ed"], bool(record["signed"]))


def _single_key(obj: Any, user_id: str, usage: str) -> tuple[str, str] | None:
    if not isinstance(obj, dict) or obj.get("user_id") != user_id or usage not in obj.get("usage", []):
        return None
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        return None
    key_id, public = next(iter(keys.items()))
    return (key_id, public) if isinstance(public, str) and key_id.startswith("ed25519:") else None


def owner_self_signing_key(response: dict[str, Any], user_id: str) -> tuple[str, str] | None:
    """The user's self-signing key, if it is signed by their master key."""
    master = _single_key(response.get("master_keys", {}).get(user_id), user_id, "master")
    self_signing_obj = response.get("self_signing_keys", {}).get(user_id)
    self_signing = _single_key(self_signing_obj, user_id, "self_signing")
    if master is None or self_signing is None:
        return None
    return self_signing if verify(self_signing_obj, user_id, *master) else None


def devices_of(response: dict[str, Any], user_id: str) -> dict[str, Device]:
    """The user's devices in a `/keys/query` answer whose keys are self-signed and consistent."""
    owner_key = owner_self_signing_key(response, user_id)
    found: dict[str, Device] = {}
    for device_id, keys in (response.get("device_keys", {}).get(user_id) or {}).items():
        if not isinstance(keys, dict) or keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            continue
        published = keys.get("keys", {})
        curve = published.get(f"curve25519:{device_id}")
        ed = published.get(f"ed25519:{device_id}")
        if not isinstance(curve, str) or not isinstance(ed, str):
            continue
        if not verify(keys, user_id, f"ed25519:{device_id}", ed):
            log.warning(
                "ignoring a device whose keys are not self-signed",
                extra={"user": user_id, "device": device_id},
            )
            continue
        signed = owner_key is not None and verify(keys, user_id, *owner_key)
        found[device_id] = Device(user_id, device_id, curve, ed, signed)
    return found


def _listed(user_id: str, allowlist: Iterable[str]) -> bool:
    server = user_id.split(":", 1)[1] if ":" in user_id else ""
    return any(entry == user_id or entry.lstrip(":") == server for entry in allowlist)


def receives_keys(device: Device, sharing: Sharing, allowlist: Iterable[str]) -> bool:
    if sharing == "cross-signed":
        return device.signed_by_owner
    if sharing == "allowlist":
        return _listed(device.user_id, allowlist)
    return True
