"""What a template's `{{ }}` outputs go through: Go html/template's escaping, metio's functions
(`ToUpper`, `ToLower`, `Replace`, `RegexReplace`) and a `url` filter for `href` values. Shared by
the Jinja2 environment and the built-in templates compiled to Python, so both escape alike."""

from __future__ import annotations

import re
from typing import Any

from jinja2 import Undefined
from markupsafe import Markup

from matrix_stack.shared.matrix.links import safe_href

_GO_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;", "+": "&#43;",
                             "\0": "\ufffd"})  # fmt: skip
_TO_ESCAPE = re.compile("[&<>\"'+\0]")
_GO_GROUP = re.compile(r"\$(\d+)|\$\{(\w+)\}")


def escape_text(value: str) -> str:
    """What html/template writes for a string in text and quoted attributes (it also escapes `+`)."""
    return value if _TO_ESCAPE.search(value) is None else value.translate(_GO_ESCAPES)


def go_escape(value: Any) -> str:
    """What html/template writes for `{{ x }}`."""
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, Undefined):
        return ""
    return escape_text(str(value))


class _PercentEncoder:
    """`urllib.parse.quote(text, safe)` with its table built once: one list lookup per byte (quote
    calls a dict per byte; a notification quotes a few links per alert)."""

    def __init__(self, safe: str) -> None:
        self._keep = (_ALWAYS_SAFE + safe).encode()
        self._table = [chr(byte) if byte in self._keep else f"%{byte:02X}" for byte in range(256)]

    def __call__(self, text: str) -> str:
        data = text.encode()
        if not data.rstrip(self._keep):  # nothing to encode (urllib's own shortcut)
            return text
        table = self._table
        return "".join([table[byte] for byte in data])


_ALWAYS_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"  # as urllib's quote
percent_encode = _PercentEncoder("")  # Go's QueryEscape, with spaces as %20
_percent_encode_url = _PercentEncoder("-._~!#$&*+,/:;=?@[]%")


def url(value: Any) -> str:
    """A URL for an href: what the core's link policy refuses becomes empty (metio's Go templates
    write `#ZgotmplZ`, a dead link; the link text then stays as plain text), anything else is
    percent-normalised."""
    text = "" if value is None or isinstance(value, Undefined) else str(value)
    allowed = safe_href(text)
    return "" if allowed is None else _percent_encode_url(allowed)


def to_upper(value: Any) -> str:
    return "" if isinstance(value, Undefined) else str(value).upper()


def to_lower(value: Any) -> str:
    return "" if isinstance(value, Undefined) else str(value).lower()


def replace(value: Any, old: str, new: str) -> str:
    """metio's `Replace old new` (in Go the piped value comes last; in Jinja2 it comes first)."""
    return str(value).replace(old, new)


def regex_replace(value: Any, pattern: str, replacement: str) -> str:
    """metio's `RegexReplace pattern replacement`, with Go's `$1`/`${name}` group references."""
    python = _GO_GROUP.sub(lambda m: f"\\g<{m.group(1) or m.group(2)}>", replacement)
    try:
        return re.sub(pattern, python, str(value))
    except re.error:
        return str(value)
