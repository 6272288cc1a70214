"""The key objects the device publishes, signed: its device keys, one-time and fallback keys, and the
account's cross-signing keys with the signature that vouches for the device.

Pure builders; uploading them (and when) is the machine's part.
"""

from __future__ import annotations

from typing import Any

import vodozemac

from matrix_stack.shared.matrix.crypto.canonical import add_signature, signable
from matrix_stack.shared.matrix.crypto.devices import MEGOLM, OLM
from matrix_stack.shared.matrix.crypto.secret import DerivedKeys, SigningKey


def device_keys(account: vodozemac.Account, user_id: str, device_id: str) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": [OLM, MEGOLM],
        "keys": {
            f"curve25519:{device_id}": account.curve25519_key.to_base64(),
            f"ed25519:{device_id}": account.ed25519_key.to_base64(),
        },
    }
    return add_signature(keys, user_id, f"ed25519:{device_id}", _device_sign(account, keys))


def one_time_keys(account: vodozemac.Account, user_id: str, device_id: str) -> dict[str, Any]:
    """The account's unpublished one-time keys, each signed by the device."""
    return {
        f"signed_curve25519:{k}": _signed_key(account, user_id, device_id, v.to_base64())
        for k, v in account.one_time_keys.items()
    }


def fallback_keys(account: vodozemac.Account, user_id: str, device_id: str) -> dict[str, Any]:
    """The account's unpublished fallback key (if any), signed by the device."""
    return {
        f"signed_curve25519:{k}": _signed_key(account, user_id, device_id, v.to_base64(), fallback=True)
        for k, v in account.fallback_key.items()  # type: ignore[attr-defined]
    }


def _device_sign(account: vodozemac.Account, obj: dict[str, Any]) -> str:
    return str(account.sign(signable(obj)).to_base64())


def _signed_key(
    account: vodozemac.Account, user_id: str, device_id: str, key: str, *, fallback: bool = False
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key, **({"fallback": True} if fallback else {})}
    return add_signature(obj, user_id, f"ed25519:{device_id}", _device_sign(account, obj))


def cross_signing_upload(me: str, keys: DerivedKeys) -> dict[str, Any]:
    """The account's master, self-signing and user-signing keys, the latter two signed by the master."""
    master = keys.master
    upload: dict[str, Any] = {"master_key": _cross_signing_key(me, "master", master)}
    for name, usage, signing in (
        ("self_signing_key", "self_signing", keys.self_signing),
        ("user_signing_key", "user_signing", keys.user_signing),
    ):
        obj = _cross_signing_key(me, usage, signing)
        upload[name] = add_signature(obj, me, master.key_id, master.sign(signable(obj)))
    return upload


def _cross_signing_key(me: str, usage: str, signing: SigningKey) -> dict[str, Any]:
    return {"user_id": me, "usage": [usage], "keys": {signing.key_id: signing.public}}


def signed_device(device: dict[str, Any], me: str, self_signing: SigningKey) -> dict[str, Any]:
    """The device's keys as the server has them, with the account's self-signing signature added."""
    signature = self_signing.sign(signable(device))
    return add_signature(
        {k: v for k, v in device.items() if k != "unsigned"}, me, self_signing.key_id, signature
    )
