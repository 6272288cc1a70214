"""The one secret the bot's encryption rests on, and the keys derived from it.

Everything kept at rest derives from it: the key that encrypts the crypto state (vodozemac pickles)
and the seeds of the account's cross-signing keys. Deriving the cross-signing keys (instead of
generating and storing them) means every replica and every restart signs with the same identity
without storing private keys anywhere but the Secret, and re-uploading them is a no-op.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from matrix_stack.shared.matrix.crypto.canonical import unpadded

MIN_SECRET_BYTES = 16


def _derive(secret: bytes, user_id: str, purpose: str) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=user_id.encode(), info=f"matrix-stack {purpose}".encode()).derive(
        secret
    )


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key pair; `key_id` is `ed25519:<public key>` as cross-signing names them."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> str:
        return unpadded(self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.public}"

    def sign(self, message: bytes) -> str:
        return unpadded(self.private.sign(message))

    def __repr__(self) -> str:  # never the private key, even in a traceback
        return f"SigningKey({self.key_id})"


@dataclass(frozen=True)
class DerivedKeys:
    pickle_key: bytes  # encrypts vodozemac pickles at rest
    master: SigningKey
    self_signing: SigningKey
    user_signing: SigningKey

    def __repr__(self) -> str:
        return f"DerivedKeys(master={self.master.key_id})"


def derive(secret: bytes, user_id: str) -> DerivedKeys:
    def signing(purpose: str) -> SigningKey:
        return SigningKey(Ed25519PrivateKey.from_private_bytes(_derive(secret, user_id, purpose)))

    return DerivedKeys(
        _derive(secret, user_id, "pickle"),
        signing("cross-signing master"),
        signing("cross-signing self-signing"),
        signing("cross-signing user-signing"),
    )


def local_secret(path: Path) -> bytes:
    """The secret in `path`, made (random, mode 0600) on first use: for one replica on SQLite."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(value + b"\n")
    return value
