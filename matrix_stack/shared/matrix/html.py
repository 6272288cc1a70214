"""HTML for Matrix events: the spec's allowed subset, and a plain-text rendering of it."""

from __future__ import annotations

import html
import re

import nh3

from matrix_stack.shared.matrix import links

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
        return links.safe_href(value)
    if tag == "a" and attribute == "target":
        return value if value == "_blank" else None
    if tag == "img" and attribute == "src":
        return links.safe_image(value)
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
    url_schemes=set(links.LINK_SCHEMES | links.IMAGE_SCHEMES),
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


_TOKENS = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>|<!--.*?-->|([^<]+)|<", re.S)
_START = re.compile(r"""\bstart\s*=\s*["']?(\d+)""")
_ALT = re.compile(r"""\balt\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")


def html_to_text(fragment: str) -> str:
    """A readable plain-text version of an HTML fragment, for the event's `body`.

    One regular-expression pass (the stdlib parser costs more than the rest of a request):
    line breaks for blocks and <br>, numbered and bulleted list items, cells separated by `|`,
    image alt text, script and style content dropped, entities decoded.
    """
    parts: list[str] = []
    lists: list[list[int]] = []  # one entry per open list: [next number] or [] for bullets
    skip = 0

    def newline() -> None:
        if parts and not parts[-1].endswith("\n"):
            parts.append("\n")

    for match in _TOKENS.finditer(fragment):
        closing, tag, attributes, text = match.group(1), match.group(2), match.group(3), match.group(4)
        if text is not None:
            if not skip:
                parts.append(html.unescape(text))
            continue
        if tag is None:  # a comment, or a stray "<"
            if match.group(0) == "<" and not skip:
                parts.append("<")
            continue
        tag = tag.lower()
        if tag in ("script", "style"):
            skip = max(skip - 1, 0) if closing else skip + 1
        elif closing:
            if tag in ("ul", "ol"):
                if lists:
                    lists.pop()
                newline()
            elif tag in _BLOCK_TAGS or tag == "li":
                newline()
        elif tag == "br":
            parts.append("\n")
        elif tag in ("ul", "ol"):
            newline()
            number = _START.search(attributes) if tag == "ol" else None
            lists.append([int(number.group(1)) if number else 1] if tag == "ol" else [])
        elif tag == "li":
            newline()
            indent = "  " * max(len(lists) - 1, 0)
            if lists and lists[-1]:
                parts.append(f"{indent}{lists[-1][0]}. ")
                lists[-1][0] += 1
            else:
                parts.append(f"{indent}• ")
        elif tag in ("td", "th") and parts and not parts[-1].endswith("\n"):
            parts.append(" | ")
        elif tag in _BLOCK_TAGS:
            newline()
        elif tag == "img":
            alt = _ALT.search(attributes)
            if alt:
                parts.append(f"[{html.unescape(next(g for g in alt.groups() if g is not None))}]")
    return tidy_text("".join(parts))


_SPACE_BEFORE_BREAK = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


def tidy_text(text: str) -> str:
    """`html_to_text`'s last step, for a body written alongside its HTML instead of converted from
    it: no spaces before a line break, at most one blank line, no surrounding whitespace."""
    return _BLANK_LINES.sub("\n\n", _SPACE_BEFORE_BREAK.sub("\n", text)).strip()
