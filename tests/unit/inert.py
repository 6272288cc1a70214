"""The check every injection test makes of a formatted_body: HTML a Matrix client may render as is
(shared by the unit tier's injection tests and the integration tier's round trips)."""

from __future__ import annotations

from html.parser import HTMLParser

from matrix_stack.shared.matrix.html import ALLOWED_ATTRIBUTES, ALLOWED_TAGS


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def assert_inert(fragment: str) -> None:
    """Only the spec's tags, no event handlers, links only to http(s)/mailto, images only mxc."""
    parser = _Elements()
    parser.feed(fragment)
    for tag, attrs in parser.found:
        assert tag in ALLOWED_TAGS, (tag, fragment)
        for name, value in attrs:
            assert not name.startswith("on"), (name, fragment)
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()), (tag, name, fragment)
            if name == "href":
                assert (value or "").startswith(("http://", "https://", "mailto:")), (value, fragment)
            if name == "src":
                assert (value or "").startswith("mxc://"), (value, fragment)
