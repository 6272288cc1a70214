"""Canonical JSON (the spec's signing form) and Ed25519 signatures over it."""

from __future__ import annotations

import base64
import json
from typing import Any

import vodozemac


def canonical(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 without escapes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def signable(obj: dict[str, Any]) -> bytes:
    """What a signature covers: the object without `signatures` and `unsigned`."""
    return canonical({k: v for k, v in obj.items() if k not in ("signatures", "unsigned")})


def unpadded(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def verify(obj: dict[str, Any], user_id: str, key_id: str, public_key: str) -> bool:
    """Whether `obj` carries a valid signature by `user_id`'s key `key_id` (`ed25519:...`)."""
    signature = obj.get("signatures", {}).get(user_id, {}).get(key_id)
    if not isinstance(signature, str):
        return False
    try:
        vodozemac.Ed25519PublicKey.from_base64(public_key).verify_signature(
            signable(obj), vodozemac.Ed25519Signature.from_base64(signature)
        )
    except (vodozemac.KeyException, vodozemac.SignatureException, ValueError, TypeError):
        return False
    return True


def add_signature(obj: dict[str, Any], user_id: str, key_id: str, signature: str) -> dict[str, Any]:
    signed = dict(obj)
    signatures = {user: dict(keys) for user, keys in obj.get("signatures", {}).items()}
    signatures.setdefault(user_id, {})[key_id] = signature
    signed["signatures"] = signatures
    return signed
