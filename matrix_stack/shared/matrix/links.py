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


def safe_href(url: str) -> str | None:
    """The URL, stripped, when a message may link to it; None otherwise."""
    return url.strip() if scheme_of(url) in LINK_SCHEMES else None


def safe_image(url: str) -> str | None:
    return url.strip() if scheme_of(url) in IMAGE_SCHEMES else None
