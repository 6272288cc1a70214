"""Slack mrkdwn to Matrix HTML and plain text.

Slack senders escape exactly `&`, `<` and `>`, so a literal `<` always opens a control token
(`<url|label>`, `<@U123>`, `<!here>`, `<!date^...>`). Text is tokenised first; emphasis is then
matched over a shadow string in which every token and code span is one placeholder character, so
`*<https://x|Graph>*` is a bold link; finally the shadow string is HTML-escaped and the placeholders
are put back. Nothing from the payload ever reaches the HTML unescaped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import emoji

from matrix_stack.shared.matrix.html import escape
from matrix_stack.shared.matrix.links import safe_href

# Placeholders live in the private-use areas, which are removed from the input first:
# U+E001..U+E006 mark emphasis, U+F0000 upwards stand for rendered atoms (tokens, code spans).
_PUA = re.compile("[\ue000-\uf8ff\U000f0000-\U0010ffff]")
_ATOM_BASE = 0xF0000
_OPEN = {"*": "\ue001", "_": "\ue003", "~": "\ue005"}
_CLOSE = {"*": "\ue002", "_": "\ue004", "~": "\ue006"}
_TAGS = {"\ue001": "<strong>", "\ue002": "</strong>", "\ue003": "<em>", "\ue004": "</em>",
         "\ue005": "<del>", "\ue006": "</del>"}  # fmt: skip
_EMPHASIS = {
    marker: re.compile(
        rf"(?<![\w{re.escape(marker)}])"  # opens at the start or after space/punctuation
        rf"{re.escape(marker)}(?=[^\s{re.escape(marker)}])"
        rf"([^{re.escape(marker)}\n]*?[^\s{re.escape(marker)}])"
        rf"{re.escape(marker)}(?![\w{re.escape(marker)}])"
    )
    for marker in ("*", "_", "~")
}
# Every placeholder: the emphasis marks and anything from U+F0000 on (an atom).
_PLACEHOLDER = re.compile("([\ue001-\ue006\U000f0000-\U0010ffff])")
_CODE_BLOCK = re.compile(r"```(.*?)```", re.DOTALL)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_TOKEN = re.compile(r"<([^<>\n]+)>")
_EMOJI_ALIAS = re.compile(r":[a-z0-9_+\-]+:")
BROADCASTS = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}


@dataclass
class Options:
    """How mentions are mapped; shared by every text of one message."""

    users: Mapping[str, str] = field(default_factory=dict)  # Slack user id -> Matrix user id
    room_mentions: bool = False  # <!here> and friends ping the room (m.mentions.room)
    now: datetime | None = None  # for {ago}; tests pin it


@dataclass
class Rendered:
    html: str
    text: str
    mentions: set[str] = field(default_factory=set)
    room_mention: bool = False

    def __add__(self, other: Rendered) -> Rendered:
        return Rendered(
            self.html + other.html,
            self.text + other.text,
            self.mentions | other.mentions,
            self.room_mention or other.room_mention,
        )


def plain(text: str) -> Rendered:
    """Literal text (already unescaped)."""
    return Rendered(escape(text).replace("\n", "<br>"), text)


def unescape_slack(text: str) -> str:
    """Undo exactly Slack's three escapes, nothing else."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def emojize(text: str) -> str:
    return _EMOJI_ALIAS.sub(lambda m: emoji.emojize(m.group(0), language="alias"), text)


def plain_text_object(text: str, *, with_emoji: bool = True) -> Rendered:
    """A Block Kit `plain_text` object: entities and emoji only."""
    value = unescape_slack(_PUA.sub("", text))
    return plain(emojize(value) if with_emoji else value)


def mrkdwn(source: str, options: Options | None = None, *, formatting: bool = True) -> Rendered:
    """Render a mrkdwn string. With `formatting=False` (Slack's `mrkdwn: false`) only tokens,
    entities and emoji are processed."""
    options = options or Options()
    source = _PUA.sub("", source).replace("\r\n", "\n")
    result = Rendered("", "")
    position = 0
    for block in _CODE_BLOCK.finditer(source):
        result += _lines(source[position : block.start()], options, formatting)
        code = unescape_slack(block.group(1).strip("\n"))
        result += Rendered(f"<pre><code>{escape(code)}</code></pre>", f"\n```\n{code}\n```\n")
        position = block.end()
    result += _lines(source[position:], options, formatting)
    result.text = re.sub(r"\n{3,}", "\n\n", result.text).strip("\n")
    return result


def _lines(source: str, options: Options, formatting: bool) -> Rendered:
    """Group quoted lines (`>` or `&gt;`, or everything after `>>>`) into blockquotes."""
    if not source:
        return Rendered("", "")
    out = Rendered("", "")
    quoted: list[str] = []
    plain_lines: list[str] = []

    def flush_plain() -> None:
        nonlocal out
        if plain_lines:
            out += inline("\n".join(plain_lines), options, formatting=formatting)
            plain_lines.clear()

    def flush_quote() -> None:
        nonlocal out
        if quoted:
            inner = inline("\n".join(quoted), options, formatting=formatting)
            text = "\n".join(f"> {line}" for line in inner.text.split("\n"))
            out += Rendered(
                f"<blockquote>{inner.html}</blockquote>", f"{text}\n", inner.mentions, inner.room_mention
            )
            quoted.clear()

    lines = source.split("\n")
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        for prefix in (">>>", "&gt;&gt;&gt;"):
            if formatting and stripped.startswith(prefix):
                flush_plain()
                quoted.append(stripped[len(prefix) :].lstrip())
                quoted.extend(lines[index + 1 :])
                flush_quote()
                return out
        marker = next((p for p in (">", "&gt;") if formatting and stripped.startswith(p)), None)
        if marker:
            if plain_lines:
                flush_plain()
                out += Rendered("<br>", "\n")
            quoted.append(stripped[len(marker) :].removeprefix(" "))
        else:
            if quoted:
                flush_quote()
            plain_lines.append(line)
    flush_plain()
    flush_quote()
    return out


def inline(source: str, options: Options, *, formatting: bool = True) -> Rendered:
    """Tokens, code spans, emphasis, emoji and line breaks within one run of text."""
    atoms: list[Rendered] = []

    def atom(rendered: Rendered) -> str:
        atoms.append(rendered)
        return chr(_ATOM_BASE + len(atoms) - 1)

    def code(match: re.Match[str]) -> str:
        value = unescape_slack(match.group(1))
        return atom(Rendered(f"<code>{escape(value)}</code>", f"`{value}`"))

    def token(match: re.Match[str]) -> str:
        return atom(control_token(match.group(1), options))

    shadow = _CODE_SPAN.sub(code, source) if formatting else source
    shadow = _TOKEN.sub(token, shadow)
    shadow = emojize(unescape_slack(shadow))
    if formatting:
        for marker, pattern in _EMPHASIS.items():
            shadow = pattern.sub(f"{_OPEN[marker]}\\1{_CLOSE[marker]}", shadow)
    out = Rendered("", "")
    # Split on the placeholders (odd items) rather than walking characters: a request's hot path.
    for index, piece in enumerate(_PLACEHOLDER.split(shadow)):
        if index % 2 == 0:
            if piece:
                out += Rendered(escape(piece).replace("\n", "<br>"), piece)
        elif piece in _TAGS:
            out.html += _TAGS[piece]
        else:
            out += atoms[ord(piece) - _ATOM_BASE]
    return out


def control_token(content: str, options: Options) -> Rendered:
    """One `<...>` token."""
    target, _, label = content.partition("|")
    if target.startswith("@"):
        user = target[1:]
        matrix_id = options.users.get(user)
        name = label or (matrix_id or user)
        if matrix_id:
            shown = name if name.startswith("@") else f"@{name}" if label else matrix_id
            return Rendered(
                f'<a href="https://matrix.to/#/{escape(matrix_id)}">{escape(shown)}</a>', shown, {matrix_id}
            )
        shown = f"@{name.lstrip('@')}"
        return plain(shown)
    if target.startswith("#"):
        return plain(f"#{(label or target[1:]).lstrip('#')}")
    if target.startswith("!"):
        return _special(target[1:], label, options)
    if safe_href(target):
        inner = inline(label, options) if label else plain(target)
        shown_text = inner.text
        address = target.removeprefix("mailto:") if target.lower().startswith("mailto:") else target
        text = shown_text if shown_text in (target, address) else f"{shown_text} ({address})"
        return Rendered(
            f'<a href="{escape(target)}">{inner.html}</a>', text, inner.mentions, inner.room_mention
        )
    # Other schemes (slack://, javascript:, relative paths): never a link (the core's link policy).
    return plain(unescape_slack(label or target))


def _special(command: str, label: str, options: Options) -> Rendered:
    name, _, argument = command.partition("^")
    if name in BROADCASTS:
        shown = BROADCASTS[name]
        return Rendered(f"<strong>{shown}</strong>", shown, set(), options.room_mentions)
    if name == "subteam":
        return plain(label or f"@{argument}")
    if name == "date":
        return _date(argument, label, options)
    return plain(unescape_slack(label or name))


def _ordinal(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _ago(moment: datetime, now: datetime) -> str:
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("year", 31536000), ("month", 2592000), ("day", 86400), ("hour", 3600),
                       ("minute", 60)):  # fmt: skip
        if seconds >= size:
            count = seconds // size
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if future else f"{words} ago"
    return "just now"


def format_date(epoch: float, template: str, now: datetime | None = None) -> str:
    """Slack's date tokens, in UTC."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    hour = moment.strftime("%I").lstrip("0")
    date = f"{moment:%B} {_ordinal(moment.day)}, {moment.year}"
    values = {
        "date_num": f"{moment:%Y-%m-%d}",
        "date": date,
        "date_short": f"{moment:%b} {moment.day}, {moment.year}",
        "date_long": f"{moment:%A}, {date}",
        "time": f"{hour}:{moment:%M %p} UTC",
        "time_secs": f"{hour}:{moment:%M:%S %p} UTC",
        "ago": _ago(moment, now or datetime.now(UTC)),
    }
    for pretty in ("date", "date_short", "date_long"):
        values[f"{pretty}_pretty"] = values[pretty]
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


def _date(argument: str, label: str, options: Options) -> Rendered:
    parts = argument.split("^")
    try:
        text = format_date(float(parts[0]), parts[1], options.now) if len(parts) >= 2 else None
    except (ValueError, OverflowError, OSError):
        text = None
    shown = text or unescape_slack(label) or argument
    if len(parts) >= 3 and safe_href(parts[2]):
        return Rendered(f'<a href="{escape(parts[2])}">{escape(shown)}</a>', shown)
    return plain(shown)
