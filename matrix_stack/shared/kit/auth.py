"""Credentials presented in an Authorization header, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request


def _scheme_and_value(request: Request) -> tuple[str, str]:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return scheme.lower(), value.strip()


def bearer_matches(request: Request, expected: str) -> bool:
    scheme, presented = _scheme_and_value(request)
    # Compared even when the scheme is wrong, so timing says nothing about the token.
    same = hmac.compare_digest(presented.encode(), expected.encode())
    return scheme == "bearer" and same


def basic_matches(request: Request, username: str, password: str) -> bool:
    scheme, encoded = _scheme_and_value(request)
    try:
        user, _, given = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, given = "", ""
    same_user = hmac.compare_digest(user.encode(), username.encode())
    same_password = hmac.compare_digest(given.encode(), password.encode())
    return scheme == "basic" and same_user and same_password
