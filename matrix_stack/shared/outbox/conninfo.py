"""libpq connection strings (URLs or key=value pairs): checked before use and never echoed with their
password. Shared by everything that talks to PostgreSQL (the outbox, compress-state)."""

from __future__ import annotations

import re
from collections.abc import Iterable

_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and any password in a URL or key=value string masked."""
    for secret in secrets:
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def passwords(conninfo: str) -> list[str]:
    """The passwords a connection string holds; ValueError (without echoing it) when it is malformed."""
    import psycopg.conninfo  # here: importing this module (redact, first_line) must not load libpq

    try:
        parsed = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.Error:
        # libpq quotes the part it cannot parse, which may be the password.
        raise ValueError("the connection string is malformed (a URL or key=value pairs)") from None
    if "@" in str(parsed.get("host") or ""):  # an unescaped @ in a URL's password: the rest became the host
        raise ValueError("the connection string is malformed (percent-encode an @ in the password as %40)")
    return [value for key, value in parsed.items() if key == "password" and isinstance(value, str)]


def first_line(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """One redacted line for a database error."""
    text = str(error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__, secrets)
