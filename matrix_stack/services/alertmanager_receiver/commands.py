"""What on-call people type in the alert room, parsed without I/O: replies to an alert message
(`silence 2h [comment]`, `ack`, `unsilence`...) and the `!alert` command family; durations and
Alertmanager's matcher syntax. Anything that is not a command is `None` (people chat in threads:
the bot must not answer every reply); a known command word with bad arguments is `Invalid`, whose
reason is what the bot replies."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from matrix_stack.shared.matrix.replies import (
    command_text,
    looks_like_duration,
    split_word,
    take_duration,
)

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = ("=~", "!~", "!=", "=")  # two-character ones first: "=" is a prefix of "=~"
# Alertmanager's: any other backslash stays as written (`=~"db\.example"` keeps its regex escape)
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}

SILENCE_USAGE = (
    'usage: !alert silence <duration> <matchers> [comment], e.g. !alert silence 2h alertname="DiskFull"'
)
BANG_USAGE = (
    "usage: !alert list | !alert silence <duration> <matchers> [comment] | "
    "!alert expire <silence id> | !alert help"
)
HELP = (
    "Reply to an alert message with:\n"
    "• silence [duration] [comment] (or ack): silence it, until it resolves when no duration is given\n"
    "• unsilence (or unack): expire that silence\n"
    "Durations: 90s, 30m, 2h, 1d, 1w, 1h30m, 2d 3h (at most 366 days).\n"
    "In the room:\n"
    "• !alert list: the silences made from Matrix\n"
    '• !alert silence <duration> <matchers> [comment], e.g. !alert silence 2h alertname="DiskFull" '
    'instance=~"db-.*"\n'
    "• !alert expire <silence id>"
)


@dataclass(frozen=True)
class Matcher:
    """One Alertmanager label matcher: `name="v"` (equal), `name!="v"`, `name=~"re"`, `name!~"re"`."""

    name: str
    value: str
    is_regex: bool
    is_equal: bool

    def to_api(self) -> dict[str, str | bool]:
        """Alertmanager's postable matcher (API v2)."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, data: Mapping[str, object]) -> Matcher:
        return cls(str(data["name"]), str(data["value"]), bool(data["isRegex"]),
                   bool(data.get("isEqual", True)))  # fmt: skip

    @property
    def operator(self) -> str:
        return {(True, False): "=", (False, False): "!=", (True, True): "=~", (False, True): "!~"}[
            (self.is_equal, self.is_regex)
        ]

    def matches(self, value: str) -> bool:
        """Whether a label's value (`""` for a missing label) is selected, as Alertmanager anchors it."""
        hit = re.fullmatch(self.value, value) is not None if self.is_regex else self.value == value
        return hit == self.is_equal

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.operator}"{escaped}"'


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """`{a="b", c=~"d.*"}`: the syntax `parse_matchers` reads and Alertmanager's UI shows."""
    return "{" + ", ".join(str(matcher) for matcher in matchers) + "}"


@dataclass(frozen=True)
class Silence:
    """Silence the alert replied to; `duration` None: until it resolves."""

    duration: timedelta | None
    comment: str | None


@dataclass(frozen=True)
class Unsilence:
    """Expire the silence made for the alert replied to."""


@dataclass(frozen=True)
class ListSilences:
    """The silences this receiver made that are active or pending."""


@dataclass(frozen=True)
class SilenceMatching:
    matchers: tuple[Matcher, ...]
    duration: timedelta
    comment: str | None


@dataclass(frozen=True)
class Expire:
    silence_id: str


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Invalid:
    """A command word we know with bad arguments: `reason` is the reply."""

    reason: str


Command = Silence | Unsilence | ListSilences | SilenceMatching | Expire | Help | Invalid

# matchers


class _Scanner:
    """Reads matchers from `text` at `position`. In a command (`stop_at_space`) an unquoted value ends
    at white space and the list ends where no further matcher follows; alone, Alertmanager reads an
    unquoted value up to the next comma."""

    def __init__(self, text: str, position: int, stop_at_space: bool) -> None:
        self.text, self.position, self.stop_at_space = text, position, stop_at_space

    def peek(self) -> str:
        return self.text[self.position : self.position + 1]

    def skip_space(self) -> None:
        while self.peek().isspace():
            self.position += 1

    def fail(self, what: str) -> ValueError:
        rest = self.text[self.position : self.position + 20]
        return ValueError(f"{what} at {rest!r}" if rest else f"{what} at the end")

    def matchers(self) -> list[Matcher]:
        self.skip_space()
        braced = self.peek() == "{"
        self.position += braced
        found: list[Matcher] = []
        while True:
            self.skip_space()
            if braced and self.peek() == "}":
                self.position += 1
                return found
            if not self.peek():
                if braced:
                    raise self.fail("a closing } is missing")
                return found
            found.append(self.matcher(braced))
            if not self.separator(braced):
                return found

    def separator(self, braced: bool) -> bool:
        """After a matcher: whether another one follows."""
        start = self.position
        self.skip_space()
        if self.peek() == ",":
            self.position += 1
            return True
        if braced:
            if self.peek() == "}":
                return True
            raise self.fail("expected , or }" if self.peek() else "a closing } is missing")
        if self.stop_at_space and self.position > start and self.next_is_matcher():
            return True
        if not self.stop_at_space and self.peek():
            raise self.fail("expected ,")
        self.position = start
        return False

    def next_is_matcher(self) -> bool:
        name = _LABEL_NAME.match(self.text, self.position)
        rest = self.text[name.end() :].lstrip() if name else ""
        return rest.startswith(_OPERATORS)

    def matcher(self, braced: bool) -> Matcher:
        name = _LABEL_NAME.match(self.text, self.position)
        if name is None:
            raise self.fail("expected a label name")
        self.position = name.end()
        self.skip_space()
        operator = next((op for op in _OPERATORS if self.text.startswith(op, self.position)), None)
        if operator is None:
            raise self.fail(f"expected =, !=, =~ or !~ after {name.group()}")
        self.position += len(operator)
        self.skip_space()
        value = self.quoted() if self.peek() == '"' else self.unquoted(braced)
        return _checked(Matcher(name.group(), value, is_regex="~" in operator, is_equal=operator[0] == "="))

    def quoted(self) -> str:
        start = self.position
        self.position += 1
        chars: list[str] = []
        while (char := self.peek()) != '"':
            if not char:
                self.position = start
                raise self.fail("a closing quote is missing")
            if char == "\\" and self.text[self.position + 1 : self.position + 2] in _ESCAPES:
                self.position += 1
                char = _ESCAPES[self.peek()]
            chars.append(char)
            self.position += 1
        self.position += 1
        return "".join(chars)

    def unquoted(self, braced: bool) -> str:
        start = self.position
        while (char := self.peek()) and char != "," and not (braced and char == "}"):
            if char == '"' or (self.stop_at_space and char.isspace()):
                break
            self.position += 1
        return self.text[start : self.position].strip()


def _checked(matcher: Matcher) -> Matcher:
    if matcher.is_regex:
        try:
            re.compile(matcher.value)
        except re.error as error:
            raise ValueError(f"{matcher.name}: bad regular expression {matcher.value!r}: {error}") from None
    return matcher


def _usable(matchers: Sequence[Matcher]) -> tuple[Matcher, ...]:
    if not matchers:
        raise ValueError('no matchers (e.g. alertname="DiskFull")')
    if all(matcher.matches("") for matcher in matchers):
        raise ValueError("at least one matcher must not match the empty string (it would silence everything)")
    return tuple(matchers)


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Alertmanager's matcher syntax: `{a="b", c!="d", e=~"f.*", g!~"h"}`, braces optional, values
    quoted (with escapes) or bare; at least one matcher must not match the empty string."""
    scanner = _Scanner(text, 0, stop_at_space=False)
    found = scanner.matchers()
    scanner.skip_space()
    if scanner.peek():
        raise scanner.fail("unexpected text after the matchers")
    return _usable(found)


def matchers_for(labels: Mapping[str, str]) -> tuple[Matcher, ...]:
    """Equality matchers for every label, by name: what selects exactly one alert (or, given a group's
    common labels, the group)."""
    return tuple(Matcher(name, labels[name], is_regex=False, is_equal=True) for name in sorted(labels))


# replies


def _with_duration(rest: str) -> Silence | Invalid:
    """`silence`/`ack` arguments: an optional leading duration, then the comment."""
    if not looks_like_duration(rest):
        return Silence(None, rest or None)
    try:  # `silence 2x`: a duration was meant, not a comment
        duration, comment = take_duration(rest)
    except ValueError as error:
        return Invalid(str(error))
    return Silence(duration, comment.strip() or None)


def parse_reply(body: str, bot_names: Sequence[str] = ()) -> Command | None:
    """The command in a reply to an alert message, or None for chat. `bot_names`: the bot's user id
    and display names, so that a message starting with a mention of the bot (`@bot:server: ack`,
    `Alertbot: ack`) counts; a mention of someone else does not."""
    word, rest = split_word(command_text(body, bot_names))
    word = word.casefold()
    if word in ("silence", "ack"):
        return _with_duration(rest)
    if word in ("unsilence", "unack", "nack"):
        return Unsilence()
    if word == "help":
        return Help()
    return None


# !alert


def _take_matchers(text: str) -> tuple[tuple[Matcher, ...], str]:
    """The matchers at the start of `text` and what follows them."""
    scanner = _Scanner(text, 0, stop_at_space=True)
    matchers = _usable(scanner.matchers())
    return matchers, text[scanner.position :]


def _silence_matching(rest: str) -> SilenceMatching | Invalid:
    """`<duration> <matchers> [comment]` or `<matchers> <duration> [comment]`."""
    if not rest:
        return Invalid(SILENCE_USAGE)
    try:
        if looks_like_duration(rest):  # no label name starts with a digit
            duration, after = take_duration(rest)
            matchers, comment = _take_matchers(after)
        else:
            matchers, after = _take_matchers(rest)
            duration, comment = take_duration(after)
    except ValueError as error:
        return Invalid(f"{error}. {SILENCE_USAGE}")
    return SilenceMatching(matchers, duration, comment.strip() or None)


def parse_bang(body: str) -> Command | None:
    """An `!alert` / `!alertmanager` command, or None when the message is not one."""
    prefix, rest = split_word(body)
    if prefix.casefold() not in ("!alert", "!alertmanager"):
        return None
    sub, args = split_word(rest)
    sub = sub.casefold()
    if sub in ("", "help"):
        return Help()
    if sub == "list":
        return Invalid("usage: !alert list") if args else ListSilences()
    if sub == "silence":
        return _silence_matching(args)
    if sub == "expire":
        ids = args.split()
        return Expire(ids[0]) if len(ids) == 1 else Invalid("usage: !alert expire <silence id>")
    return Invalid(f"unknown command {sub!r}. {BANG_USAGE}")
