"""Jinja2 (sandboxed) with Go html/template's escaping of every `{{ }}` output, metio's functions
(`ToUpper`, `ToLower`, `Replace`, `RegexReplace`) and a `url` filter for `href` values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
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


def environment(strict: bool = False) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=False,  # escaping is done by `finalize`, the Go way
        finalize=go_escape,
        undefined=StrictUndefined if strict else Undefined,
        keep_trailing_newline=True,
    )
    env.filters.update({"ToUpper": to_upper, "ToLower": to_lower, "Replace": replace,
                        "RegexReplace": regex_replace, "url": url})  # fmt: skip
    return env


class Templates:
    """The compiled templates; a syntax error fails at start-up with the template's name."""

    def __init__(self, firing: str, resolved: str, group: str) -> None:
        env = environment()
        self._compiled = {}
        for name, source in (("firing-template", firing), ("resolved-template", resolved or firing),
                             ("group-template", group)):  # fmt: skip
            try:
                self._compiled[name] = env.from_string(source)
            except TemplateError as exc:
                raise ValueError(f"templating.{name}: {exc}") from exc

    def render(self, name: str, data: Mapping[str, Any]) -> str:
        return str(self._compiled[name].render(**data)).strip()
