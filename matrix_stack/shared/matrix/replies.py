"""What people type when they answer a bot's message, read without I/O: which message a reply or a
thread message is about, the quoted fallback older clients prepend, a leading mention of the bot,
and durations (`2h`, `1h30m`, `2 hours`). Each bridge's own command words build on these."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

MAX_DURATION = timedelta(days=366)

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 604800),
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_FALLBACK_LINE = re.compile(r"^>( |$)")


# -- durations ----------------------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1w`, `1.5h`, `1h30m`, `2d 3h`, `2 hours`; positive, at most 366 days."""
    cleaned = text.strip().lower()
    if cleaned.startswith("-"):
        raise ValueError(f"a duration must be positive, not {text.strip()!r}")
    seconds, position = 0.0, 0
    while position < len(cleaned):
        part = _PART.match(cleaned, position)
        if part is None or part.group(2) not in _UNITS:
            raise ValueError(f"{text.strip()!r} is not a duration (try 90s, 30m, 2h, 1d, 1w or 1h30m)")
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    if not cleaned:
        raise ValueError("a duration is missing (try 90s, 30m, 2h, 1d, 1w or 1h30m)")
    duration = timedelta(seconds=seconds)
    if duration <= timedelta(0):
        raise ValueError(f"a duration must be positive, not {text.strip()!r}")
    if duration > MAX_DURATION:
        raise ValueError(f"{text.strip()!r} is too long: at most {MAX_DURATION.days} days")
    return duration


def format_duration(duration: timedelta) -> str:
    """`2h`, `1d 3h`, `30m`, `1m 30s` (whole seconds; weeks as days)."""
    total = int(duration.total_seconds())
    sign, total = ("-", -total) if total < 0 else ("", total)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + (" ".join(parts) or "0s")


def looks_like_duration(text: str) -> bool:
    return re.match(r"\s*-?\d", text) is not None


def after_words(text: str, count: int) -> str:
    """`text` without its first `count` white-space separated words."""
    return re.sub(rf"^(\s*\S+){{{count}}}", "", text, count=1) if count else text


def take_duration(text: str) -> tuple[timedelta, str]:
    """The duration at the start of `text` (`2h`, `2d 3h`, `2 hours`) and what follows it."""
    words = text.split()
    for count in range(min(len(words), 4), 0, -1):  # the longest run of words that is one
        try:
            return parse_duration(" ".join(words[:count])), after_words(text, count)
        except ValueError:
            continue
    parse_duration(words[0] if words else "")  # raises, saying what is wrong with it
    raise AssertionError("not reached: a word that is no duration alone is not one in a run either")


# -- replies ------------------------------------------------------------------------------------------


def split_word(text: str) -> tuple[str, str]:
    """The first word and the rest, both stripped."""
    parts = text.strip().split(maxsplit=1)
    return (parts[0], parts[1].strip()) if len(parts) == 2 else (parts[0] if parts else "", "")


def strip_fallback(body: str) -> str:
    """Drop a rich reply's quoted fallback (`> <@alice:example.org> ...` lines and the blank line
    after them); the spec no longer sends it (v1.13), older clients still do."""
    lines = body.split("\n")
    quoted = 0
    while quoted < len(lines) and _FALLBACK_LINE.match(lines[quoted]):
        quoted += 1
    if quoted and quoted < len(lines) and not lines[quoted].strip():
        quoted += 1
    return "\n".join(lines[quoted:])


def _mention_forms(bot_names: Sequence[str]) -> list[str]:
    """How a mention of the bot starts a message: its user id, display name, localpart (`@`-less too)."""
    forms: set[str] = set()
    for name in bot_names:
        forms.add(name)
        if name.startswith("@") and ":" in name:
            localpart = name[1:].split(":", 1)[0]
            forms.update((localpart, f"@{localpart}"))
    return sorted((form for form in forms if form), key=len, reverse=True)  # longest first


def strip_mention(text: str, bot_names: Sequence[str]) -> str:
    """`text` without a leading mention of the bot (`@bot:server: ack`, `Alertbot, ack`)."""
    folded = text.casefold()
    for form in _mention_forms(bot_names):
        if folded.startswith(form.casefold()):
            rest = text[len(form) :]
            match = re.match(r"[:,]?(\s+|$)", rest)
            if match:
                return rest[match.end() :]
    return text


def command_text(body: str, bot_names: Sequence[str]) -> str:
    """What a reply says, without its fallback quote and a leading mention of the bot."""
    return strip_mention(strip_fallback(body).strip(), bot_names)


def replied_to(relation: dict[str, Any]) -> str | None:
    """The message a reply is about: a thread's root (in a thread the reply's own target may be an
    earlier reply), else the event it replies to."""
    if relation.get("rel_type") == "m.thread" and isinstance(relation.get("event_id"), str):
        return str(relation["event_id"])
    reply = relation.get("m.in_reply_to")
    if isinstance(reply, dict) and isinstance(reply.get("event_id"), str):
        return str(reply["event_id"])
    return None
