"""A Slack incoming-webhook payload to one Matrix message: text, Block Kit and legacy attachments.

Pure functions over the parsed JSON. Every field may be null or of a surprising type; unknown blocks
and elements are skipped. Everything from the payload is escaped or sanitised on the way out.
"""

from __future__ import annotations

import colorsys
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markdown_it import MarkdownIt

from matrix_stack.services.slack_webhook.mrkdwn import (
    Options,
    Rendered,
    emojize,
    format_date,
    mrkdwn,
    plain,
    plain_text_object,
)
from matrix_stack.shared.matrix.html import escape, html_to_text, sanitize
from matrix_stack.shared.matrix.links import safe_href

MAX_EVENT_BYTES = 60 * 1024  # Matrix events must stay under 64 KiB; leave room for the envelope
TRUNCATION_MARK = "… (message truncated)"
_markdown = MarkdownIt("commonmark", {"html": False})

NAMED_COLOURS = {"good": "#2EB886", "warning": "#DAA038", "danger": "#A30200"}


class NoText(ValueError):
    """Nothing in the payload can be shown."""


@dataclass
class Message:
    body: str
    html: str
    mentions: set[str]
    room_mention: bool
    link_previews: bool = True


def _s(value: Any) -> str:
    """A text field: null is empty, numbers become text, anything structured is ignored."""
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _empty() -> Rendered:
    return Rendered("", "")


def _join(parts: list[Rendered], html_sep: str, text_sep: str) -> Rendered:
    parts = [p for p in parts if p.html or p.text]
    out = _empty()
    for index, part in enumerate(parts):
        if index:
            out += Rendered(html_sep, text_sep)
        out += part
    return out


def _line(part: Rendered) -> Rendered:
    """A part on its own line(s)."""
    return part + Rendered("<br>", "\n") if part.html or part.text else part


def _link(url: str, label: Rendered) -> Rendered:
    if not safe_href(url):
        return label
    text = label.text if label.text in ("", url) else f"{label.text} ({url})"
    return Rendered(
        f'<a href="{escape(url)}">{label.html or escape(url)}</a>',
        text or url,
        label.mentions,
        label.room_mention,
    )


def text_object(value: Any, options: Options) -> Rendered:
    """A Block Kit text object, or a bare string (treated as mrkdwn)."""
    if isinstance(value, str):
        return mrkdwn(value, options)
    obj = _dict(value)
    text = _s(obj.get("text"))
    if obj.get("type") == "plain_text":
        return plain_text_object(text, with_emoji=obj.get("emoji") is not False)
    return mrkdwn(text, options)


# -- Block Kit ------------------------------------------------------------------------------------


def _accessory(value: Any, options: Options) -> Rendered:
    element = _dict(value)
    kind = element.get("type")
    if kind == "image":
        alt = _s(element.get("alt_text")) or "image"
        return _link(_s(element.get("image_url")), plain(f"🖼 {alt}"))
    if kind == "button" and element.get("url"):
        return _link(_s(element.get("url")), text_object(element.get("text"), options))
    return _empty()  # selects, overflow menus, date pickers: interactive only


def _section(block: dict[str, Any], options: Options) -> Rendered:
    parts = [text_object(block["text"], options)] if block.get("text") else []
    parts += [text_object(field, options) for field in _list(block.get("fields"))]
    parts.append(_accessory(block.get("accessory"), options))
    return _join(parts, "<br>", "\n")


def _context(block: dict[str, Any], options: Options) -> Rendered:
    parts = []
    for element in _list(block.get("elements")):
        element = _dict(element)
        if element.get("type") == "image":
            parts.append(_link(_s(element.get("image_url")), plain(_s(element.get("alt_text")) or "image")))
        else:
            parts.append(text_object(element, options))
    inner = _join(parts, " · ", " · ")
    if not inner.text:
        return inner
    return Rendered(
        f'<span data-mx-color="#888888">{inner.html}</span>', inner.text, inner.mentions, inner.room_mention
    )


def _image(block: dict[str, Any], options: Options) -> Rendered:
    title = plain_text_object(_s(_dict(block.get("title")).get("text"))) if block.get("title") else _empty()
    label = title.text or _s(block.get("alt_text")) or "image"
    return _link(_s(block.get("image_url")), plain(f"🖼 {label}"))


def _actions(block: dict[str, Any], options: Options) -> Rendered:
    links = [
        _link(_s(element.get("url")), text_object(element.get("text"), options))
        for element in map(_dict, _list(block.get("elements")))
        if element.get("type") == "button" and element.get("url")
    ]
    return _join(links, " · ", " · ")


def _video(block: dict[str, Any], options: Options) -> Rendered:
    title = text_object(block.get("title"), options).text or _s(block.get("alt_text")) or "video"
    url = _s(block.get("title_url")) or _s(block.get("video_url"))
    return _link(url, plain(f"▶ {title}"))


def _markdown_block(block: dict[str, Any], options: Options) -> Rendered:
    fragment = sanitize(_markdown.render(_s(block.get("text")))).strip()
    return Rendered(fragment, html_to_text(fragment))


def _rich_inline(element: dict[str, Any], options: Options) -> Rendered:
    kind = element.get("type")
    style = _dict(element.get("style"))
    if kind == "text":
        out = plain(_s(element.get("text")))
    elif kind == "link":
        label = plain(_s(element.get("text"))) if element.get("text") else _empty()
        out = _link(_s(element.get("url")), label)
    elif kind == "emoji":
        code = _s(element.get("unicode"))
        try:
            out = plain("".join(chr(int(part, 16)) for part in code.split("-")) if code else "")
        except ValueError:
            out = _empty()
        if not out.text:
            out = plain(emojize(f":{_s(element.get('name'))}:"))
    elif kind == "user":
        out = mrkdwn(f"<@{_s(element.get('user_id'))}>", options)
    elif kind == "usergroup":
        out = plain(f"@{_s(element.get('usergroup_id'))}")
    elif kind == "channel":
        out = plain(f"#{_s(element.get('channel_id'))}")
    elif kind == "broadcast":
        out = mrkdwn(f"<!{_s(element.get('range'))}>", options)
    elif kind == "date":
        try:
            shown = format_date(float(_s(element.get("timestamp"))), _s(element.get("format")), options.now)
        except (TypeError, ValueError, OverflowError, OSError):
            shown = _s(element.get("fallback"))
        out = plain(shown)
    elif kind == "color":
        value = _s(element.get("value"))
        out = Rendered(f'<span data-mx-color="{escape(value)}">■</span> {escape(value)}', value)
    else:
        return _empty()
    for flag, tag in (("code", "code"), ("bold", "strong"), ("italic", "em"), ("strike", "del")):
        if style.get(flag) and out.html:
            out = Rendered(f"<{tag}>{out.html}</{tag}>", out.text, out.mentions, out.room_mention)
    return out


def _rich_elements(elements: Any, options: Options) -> Rendered:
    out = _empty()
    for element in _list(elements):
        out += _rich_inline(_dict(element), options)
    return out


def _rich_text(block: dict[str, Any], options: Options) -> Rendered:
    parts: list[Rendered] = []
    lists: list[tuple[int, str, list[Rendered]]] = []  # (indent, tag, items) of the list being built

    def close_lists(to_indent: int = -1) -> None:
        while lists and lists[-1][0] > to_indent:
            indent, tag, items = lists.pop()
            html_items = "".join(f"<li>{item.html}</li>" for item in items)
            text_items = "\n".join(
                f"{'  ' * indent}{f'{n}.' if tag == 'ol' else '•'} {item.text}"
                for n, item in enumerate(items, 1)
            )
            rendered = Rendered(f"<{tag}>{html_items}</{tag}>", text_items)
            for item in items:
                rendered.mentions |= item.mentions
            if lists:
                lists[-1][2][-1] = lists[-1][2][-1] + Rendered(rendered.html, "\n" + rendered.text)
            else:
                parts.append(rendered)

    for element in map(_dict, _list(block.get("elements"))):
        kind = element.get("type")
        if kind == "rich_text_list":
            raw_indent = element.get("indent")
            indent = raw_indent if isinstance(raw_indent, int) else 0
            tag = "ol" if element.get("style") == "ordered" else "ul"
            close_lists(indent)
            if not lists or lists[-1][0] < indent:
                lists.append((indent, tag, []))
            lists[-1][2].extend(
                _rich_elements(_dict(item).get("elements"), options)
                for item in _list(element.get("elements"))
            )
            continue
        close_lists()
        inner = _rich_elements(element.get("elements"), options)
        if kind == "rich_text_section":
            parts.append(inner)
        elif kind == "rich_text_preformatted":
            parts.append(Rendered(f"<pre><code>{escape(inner.text)}</code></pre>", f"```\n{inner.text}\n```"))
        elif kind == "rich_text_quote":
            quoted = "\n".join(f"> {line}" for line in inner.text.split("\n"))
            parts.append(
                Rendered(f"<blockquote>{inner.html}</blockquote>", quoted, inner.mentions, inner.room_mention)
            )
    close_lists()
    return _join(parts, "<br>", "\n")


def _header(block: dict[str, Any], options: Options) -> Rendered:
    inner = text_object(block.get("text"), options)
    return Rendered(f"<h4>{inner.html}</h4>", inner.text, inner.mentions) if inner.text else inner


BLOCKS = {
    "section": _section,
    "header": _header,
    "divider": lambda block, options: Rendered("<hr>", "----"),
    "context": _context,
    "image": _image,
    "actions": _actions,
    "rich_text": _rich_text,
    "markdown": _markdown_block,
    "video": _video,
}


def render_blocks(blocks: Any, options: Options) -> Rendered:
    parts = []
    for block in map(_dict, _list(blocks)):
        renderer = BLOCKS.get(_s(block.get("type")))
        if renderer is not None:
            parts.append(renderer(block, options))
    # Block elements (<hr>, <h4>, <pre>, <blockquote>) break lines themselves; a <br> after them
    # would add an empty line.
    out = _empty()
    for part in (p for p in parts if p.html or p.text):
        if out.html and not out.html.endswith(("</h4>", "<hr>", "</pre>", "</blockquote>", "</ul>", "</ol>")):
            out += Rendered("<br>", "\n")
        elif out.text:
            out += Rendered("", "\n")
        out += part
    return out


# -- legacy attachments ---------------------------------------------------------------------------


def colour(value: Any) -> tuple[str, str] | None:
    """(#RRGGBB, status glyph) for `good`/`warning`/`danger` or a hex colour; None otherwise."""
    raw = _s(value).strip()
    hex_value = NAMED_COLOURS.get(raw.lower(), raw)
    digits = hex_value.removeprefix("#")
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        return None
    red, green, blue = (int(digits[i : i + 2], 16) / 255 for i in (0, 2, 4))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    if saturation < 0.2 or lightness < 0.1 or lightness > 0.95:
        glyph = "⚪"
    elif hue < 25 / 360 or hue >= 330 / 360:
        glyph = "🔴"
    elif hue < 65 / 360:
        glyph = "🟠"
    elif hue < 170 / 360:
        glyph = "🟢"
    elif hue < 260 / 360:
        glyph = "🔵"
    else:
        glyph = "🟣"
    return f"#{digits.upper()}", glyph


def _timestamp(value: Any) -> str:
    try:
        moment = datetime.fromtimestamp(float(_s(value)), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return ""
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _fields(fields: Any, options: Options) -> Rendered:
    rendered: list[tuple[Rendered, bool]] = []
    for field in map(_dict, _list(fields)):
        title, value = _s(field.get("title")), _s(field.get("value"))
        if not title and not value:
            continue
        parts = []
        if title:
            label = mrkdwn(title, options)
            parts.append(Rendered(f"<strong>{label.html}</strong>", label.text, label.mentions))
        if value:
            parts.append(mrkdwn(value, options))
        rendered.append((_join(parts, ": ", ": "), field.get("short") is True))
    lines: list[Rendered] = []
    index = 0
    while index < len(rendered):
        current, short = rendered[index]
        if short and index + 1 < len(rendered) and rendered[index + 1][1]:
            lines.append(_join([current, rendered[index + 1][0]], " · ", " · "))
            index += 2
        else:
            lines.append(current)
            index += 1
    return _join(lines, "<br>", "\n")


def render_attachment(attachment: dict[str, Any], options: Options) -> Rendered:
    pretext = mrkdwn(_s(attachment.get("pretext")), options)
    shade = colour(attachment.get("color"))
    inside: list[Rendered] = []

    author = plain(_s(attachment.get("author_name")))
    if author.text:
        author = _link(_s(attachment.get("author_link")), author)
        inside.append(Rendered(f"<em>{author.html}</em>", author.text))
    title = mrkdwn(_s(attachment.get("title")), options, formatting=False)
    if title.text:
        title = _link(_s(attachment.get("title_link")), title)
        html_title = f"<strong>{title.html}</strong>"
        if shade:
            html_title = f'<font data-mx-color="{shade[0]}">{html_title}</font>'
        inside.append(Rendered(html_title, title.text, title.mentions))
    inside.append(mrkdwn(_s(attachment.get("text")), options))
    inside.append(_fields(attachment.get("fields"), options))
    if attachment.get("blocks"):
        inside.append(render_blocks(attachment.get("blocks"), options))
    for key, label in (("image_url", "🖼 image"), ("thumb_url", "🖼 thumbnail")):
        if attachment.get(key):
            inside.append(_link(_s(attachment.get(key)), plain(label)))
    actions = [
        _link(_s(action.get("url")), plain(_s(action.get("text")) or "link"))
        for action in map(_dict, _list(attachment.get("actions")))
        if action.get("url")
    ]
    inside.append(_join(actions, " · ", " · "))
    footer = _join(
        [plain(_s(attachment.get("footer"))), plain(_timestamp(attachment.get("ts")))], " · ", " · "
    )
    if footer.text:
        inside.append(Rendered(f'<span data-mx-color="#888888">{footer.html}</span>', footer.text))

    body = _join(inside, "<br>", "\n")
    if not body.text and not pretext.text:
        fallback = plain(_s(attachment.get("fallback")))
        body = fallback
    if not body.text and not pretext.text:
        return _empty()
    if shade and body.text:
        body = Rendered(f"{shade[1]} ", f"{shade[1]} ") + body
    quoted = Rendered(f"<blockquote>{body.html}</blockquote>", body.text, body.mentions, body.room_mention)
    if not pretext.text:
        return quoted if body.text else _empty()
    if not body.text:
        return pretext
    return pretext + Rendered("", "\n") + quoted


# -- the whole message ----------------------------------------------------------------------------


def render(payload: Mapping[str, Any], options: Options, *, prefix: str | None = None) -> Message:
    """The Matrix message for a payload. Raises NoText when there is nothing to show."""
    use_mrkdwn = payload.get("mrkdwn") is not False
    content = render_blocks(payload.get("blocks"), options) if payload.get("blocks") else _empty()
    if not content.text:
        content = mrkdwn(_s(payload.get("text")), options, formatting=use_mrkdwn)
    attachments = [render_attachment(_dict(a), options) for a in _list(payload.get("attachments"))]
    for attachment in attachments:
        if attachment.text:
            if content.text:  # the attachment starts with a block element: no <br> needed
                content += Rendered("", "\n")
            content += attachment
    if not content.text.strip():
        raise NoText("no_text")
    name = prefix or _s(payload.get("username"))
    icon = emojize(_s(payload.get("icon_emoji")))
    if name or icon.strip(":"):
        label = " ".join(p for p in (icon if icon != _s(payload.get("icon_emoji")) else "", name) if p)
        if label:
            content = Rendered(f"<strong>{escape(label)}</strong>: ", f"{label}: ") + content
    previews = not (payload.get("unfurl_links") is False and payload.get("unfurl_media") is False)
    html, body = truncate(content.html, content.text)
    return Message(body, html, content.mentions, content.room_mention, previews)


def _size(body: str, html: str) -> int:
    return len(json.dumps({"body": body, "formatted_body": html}, ensure_ascii=False).encode())


# What `_size` adds around the two strings; inside them no character encodes to more than 6 bytes
# (\u00XX), so a message that short is under the limit without encoding it (most are).
_ENVELOPE = _size("", "")


def truncate(html: str, body: str, limit: int = MAX_EVENT_BYTES) -> tuple[str, str]:
    """Keep the event under `limit` bytes: shorten the HTML and the text, marking the cut."""
    if _ENVELOPE + 6 * (len(body) + len(html)) <= limit or _size(body, html) <= limit:
        return html, body
    budget = limit // 2
    if len(body.encode()) > budget:
        body = body.encode()[: budget - 64].decode(errors="ignore") + "\n" + TRUNCATION_MARK
    remaining = limit - _size(body, "") - 128
    while _size("", html) > remaining and html:
        # Cut, then let the sanitiser close whatever tags the cut left open.
        html = sanitize(html[: max(len(html) * remaining // max(_size("", html), 1) - 16, 0)])
    return html + f"<br><em>{escape(TRUNCATION_MARK)}</em>", body
