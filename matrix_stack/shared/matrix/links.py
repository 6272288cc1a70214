"""The link policy: which hrefs a message may carry. Every formatter and the sanitiser ask here.

Absolute `http`, `https`, `mailto` and `matrix:` URIs (MSC2312's `matrix:r/room:example.org`);
nothing relative, no `javascript:`, `data:`, `slack://` or any other scheme.
"""

from __future__ import annotations

LINK_SCHEMES = frozenset({"http", "https", "mailto", "matrix"})
IMAGE_SCHEMES = frozenset({"mxc"})  # images only from the homeserver's media repository


def scheme_of(url: str) -> str | None:
    """The scheme of an absolute URI, lower-cased; None when it has none (a relative reference)."""
    scheme, colon, _ = url.strip().partition(":")
    if not colon or not scheme or not scheme[0].isalpha():
        return None
    if not all(c.isalnum() or c in "+-." for c in scheme):
        return None
    return scheme.lower()


def _with_scheme(url: str, schemes: frozenset[str]) -> str | None:
    # `scheme_of(url) in schemes`, without its character checks: every listed scheme passes them,
    # and no other text lower-cases to one (a sanitiser asks this for every link of every message).
    stripped = url.strip()
    scheme, colon, _ = stripped.partition(":")
    return stripped if colon and scheme.lower() in schemes else None


def safe_href(url: str) -> str | None:
    """The URL, stripped, when a message may link to it; None otherwise."""
    return _with_scheme(url, LINK_SCHEMES)


def safe_image(url: str) -> str | None:
    return _with_scheme(url, IMAGE_SCHEMES)
