"""HTML for Matrix events: the spec's allowed subset, and a plain-text rendering of it."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import nh3

# Client-Server API, "m.room.message msgtypes": the tags and attributes clients are asked to allow.
ALLOWED_TAGS = frozenset(
    {
        "font", "del", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "p", "a", "ul", "ol", "sup",
        "sub", "li", "b", "i", "u", "strong", "em", "s", "code", "hr", "br", "div", "table", "thead",
        "tbody", "tr", "th", "td", "caption", "pre", "span", "img", "details", "summary",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "font": {"data-mx-bg-color", "data-mx-color", "color"},
    "span": {"data-mx-bg-color", "data-mx-color", "data-mx-spoiler", "data-mx-maths"},
    "div": {"data-mx-maths"},
    "a": {"name", "target", "href"},
    "img": {"width", "height", "alt", "title", "src"},
    "ol": {"start"},
    "code": {"class"},
}
LINK_SCHEMES = ("http://", "https://", "mailto:", "matrix:")
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
# Templates in the wild (metio's, Alertmanager users') write colour names; clients want #rrggbb.
NAMED_COLOURS = {
    "black": "#000000", "white": "#FFFFFF", "red": "#FF0000", "green": "#008000", "blue": "#0000FF",
    "yellow": "#FFFF00", "orange": "#FFA500", "limegreen": "#32CD32", "lime": "#00FF00", "gold": "#FFD700",
    "gray": "#808080", "grey": "#808080", "silver": "#C0C0C0", "maroon": "#800000", "purple": "#800080",
    "fuchsia": "#FF00FF", "olive": "#808000", "navy": "#000080", "teal": "#008080", "aqua": "#00FFFF",
    "darkred": "#8B0000", "darkorange": "#FF8C00", "crimson": "#DC143C", "orangered": "#FF4500",
}  # fmt: skip
_LANGUAGE_CLASS = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_DIMENSION = re.compile(r"[0-9]{1,5}")


def _filter_attribute(tag: str, attribute: str, value: str) -> str | None:
    if tag == "a" and attribute == "href":
        return value if value.lower().startswith(LINK_SCHEMES) else None
    if tag == "a" and attribute == "target":
        return value if value == "_blank" else None
    if tag == "img" and attribute == "src":
        return value if value.startswith("mxc://") else None
    if tag == "img" and attribute in ("width", "height"):
        return value if _DIMENSION.fullmatch(value) else None
    if attribute in ("data-mx-color", "data-mx-bg-color", "color"):
        value = NAMED_COLOURS.get(value.strip().lower(), value.strip())
        return value if _COLOUR.fullmatch(value) else None
    if tag == "code" and attribute == "class":
        return value if _LANGUAGE_CLASS.fullmatch(value) else None
    if tag == "ol" and attribute == "start":
        return value if value.isdigit() else None
    return value


# Built once: configuring a sanitiser costs more than most messages take to clean.
_CLEANER = nh3.Cleaner(
    tags=set(ALLOWED_TAGS),
    attributes=ALLOWED_ATTRIBUTES,
    # nh3 checks URL schemes before our filter sees the value; mxc must pass for img.
    url_schemes={"http", "https", "mailto", "matrix", "mxc"},
    attribute_filter=_filter_attribute,
    link_rel=None,
    strip_comments=True,
)


def sanitize(fragment: str) -> str:
    """Reduce an HTML fragment to what the Matrix spec allows; script and style content is dropped."""
    return str(_CLEANER.clean(fragment))


def escape(text: str) -> str:
    """Escape text for interpolation into HTML (quotes too, so it is safe inside attributes)."""
    return html.escape(text, quote=True)


_BLOCK_TAGS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table",
                         "tr", "ul", "ol", "details", "summary", "caption", "hr"})  # fmt: skip


class _TextRenderer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._lists: list[list[int]] = []  # one entry per open list: [next number] or [] for bullets

    def _newline(self) -> None:
        if self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in ("ul", "ol"):
            self._newline()
            start = dict(attrs).get("start") or "1"
            self._lists.append([int(start) if start.isdigit() else 1] if tag == "ol" else [])
        elif tag == "li":
            self._newline()
            indent = "  " * max(len(self._lists) - 1, 0)
            if self._lists and self._lists[-1]:
                self.parts.append(f"{indent}{self._lists[-1][0]}. ")
                self._lists[-1][0] += 1
            else:
                self.parts.append(f"{indent}• ")
        elif tag in ("td", "th") and self.parts and not self.parts[-1].endswith("\n"):
            self.parts.append(" | ")
        elif tag in _BLOCK_TAGS:
            self._newline()
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(f"[{alt}]")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(self._skip - 1, 0)
        elif tag in ("ul", "ol"):
            if self._lists:
                self._lists.pop()
            self._newline()
        elif tag in _BLOCK_TAGS or tag == "li":
            self._newline()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """A readable plain-text version of an HTML fragment, for the event's `body`."""
    renderer = _TextRenderer()
    renderer.feed(fragment)
    renderer.close()
    text = "".join(renderer.parts)
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
