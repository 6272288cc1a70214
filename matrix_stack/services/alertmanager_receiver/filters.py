"""What a template's `{{ }}` outputs go through: Go html/template's escaping, metio's functions
(`ToUpper`, `ToLower`, `Replace`, `RegexReplace`) and a `url` filter for `href` values. Shared by
the Jinja2 environment and the built-in templates compiled to Python, so both escape alike."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from jinja2 import Undefined
from markupsafe import Markup

from matrix_stack.shared.matrix.links import safe_href

_GO_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&#34;", "'": "&#39;", "+": "&#43;",
                             "\0": "\ufffd"})  # fmt: skip
_GO_GROUP = re.compile(r"\$(\d+)|\$\{(\w+)\}")


def go_escape(value: Any) -> str:
    """What html/template writes for `{{ x }}` in text and quoted attributes (it also escapes `+`)."""
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, Undefined):
        return ""
    return str(value).translate(_GO_ESCAPES)


def url(value: Any) -> str:
    """A URL for an href: what the core's link policy refuses becomes empty (metio's Go templates
    write `#ZgotmplZ`, a dead link; the link text then stays as plain text), anything else is
    percent-normalised."""
    text = "" if value is None or isinstance(value, Undefined) else str(value)
    allowed = safe_href(text)
    return "" if allowed is None else quote(allowed, safe="-._~!#$&*+,/:;=?@[]%")


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
