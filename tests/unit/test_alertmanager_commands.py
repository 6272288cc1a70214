"""What on-call people type in the alert room: replies to alert messages, `!alert` commands, durations
and Alertmanager matchers (the silences they lead to, against a real Alertmanager:
tests/integration/test_alertmanager_silences.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from matrix_stack.services.alertmanager_receiver.commands import (
    Expire,
    Help,
    Invalid,
    ListSilences,
    Matcher,
    Silence,
    SilenceMatching,
    Unsilence,
    format_matchers,
    matchers_for,
    parse_bang,
    parse_matchers,
    parse_reply,
)
from matrix_stack.shared.matrix.replies import format_duration, parse_duration

H = timedelta(hours=1)
BOT = ("@alertbot:example.org", "Alert Bot")


def eq(name: str, value: str) -> Matcher:
    return Matcher(name, value, is_regex=False, is_equal=True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("2h", 2 * H),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(minutes=90)),
        ("2d 3h", timedelta(days=2, hours=3)),
        (" 2D3H ", timedelta(days=2, hours=3)),
        ("2 hours", 2 * H),
        ("1.5h", timedelta(minutes=90)),
        ("366d", timedelta(days=366)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "a duration is missing"),
        ("soon", "'soon' is not a duration"),
        ("2x", "'2x' is not a duration"),
        ("5", "'5' is not a duration"),
        ("2h junk", "'2h junk' is not a duration"),
        ("0m", "a duration must be positive"),
        ("0h 0s", "a duration must be positive"),
        ("-2h", "a duration must be positive"),
        ("367d", "'367d' is too long: at most 366 days"),
        ("53w", "too long"),
    ],
)
def test_bad_durations(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(2 * H) == "2h"
    assert format_duration(timedelta(days=1, hours=3)) == "1d 3h"
    assert format_duration(timedelta(minutes=30)) == "30m"
    assert format_duration(timedelta(seconds=90)) == "1m 30s"
    assert format_duration(timedelta(weeks=1)) == "7d"
    assert format_duration(timedelta(0)) == "0s"


@given(st.integers(min_value=1, max_value=366 * 86400))
def test_format_duration_reads_back(seconds: int) -> None:
    duration = timedelta(seconds=seconds)
    assert parse_duration(format_duration(duration)) == duration


# replies to an alert message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("silence", Silence(None, None)),
        ("ack", Silence(None, None)),
        ("Silence 2h", Silence(2 * H, None)),
        ("ACK 2h disk is being replaced", Silence(2 * H, "disk is being replaced")),
        ("silence 2d 3h  db migration", Silence(timedelta(days=2, hours=3), "db migration")),
        ("silence 2 hours", Silence(2 * H, None)),
        ("silence until the disk is replaced", Silence(None, "until the disk is replaced")),
        ("ack\nlooking into it", Silence(None, "looking into it")),
        ("silence 1h first line\nsecond line", Silence(H, "first line\nsecond line")),
        ("  unsilence  ", Unsilence()),
        ("unack", Unsilence()),
        ("nack", Unsilence()),
        ("UNACK please", Unsilence()),
        ("help", Help()),
        ("help commands", Help()),
    ],
)
def test_reply_commands(body: str, expected: object) -> None:
    assert parse_reply(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        "looking into it",
        "can someone ack this?",
        "silenced? no idea",
        "acknowledged",
        "!alert list",  # a bang command is not a reply command
        "> <@alertbot:example.org> FIRING DiskFull",  # only a fallback, no reply text
    ],
)
def test_chat_is_not_a_command(body: str) -> None:
    assert parse_reply(body, BOT) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("silence 2x", "'2x' is not a duration"),
        ("ack 0m", "a duration must be positive"),
        ("silence -2h", "a duration must be positive"),
        ("silence 400d", "'400d' is too long: at most 366 days"),
        (
            "silence 30 because",
            "'30' is not a duration",
        ),  # a number without a unit is a mistake, not a comment
    ],
)
def test_bad_reply_arguments_say_why(body: str, reason: str) -> None:
    answer = parse_reply(body)
    assert isinstance(answer, Invalid)
    assert answer.reason.startswith(reason)


def test_rich_reply_fallback_is_stripped() -> None:
    body = (
        "> <@alertbot:example.org> FIRING:1 DiskFull\n> on node-1\n>\n> ack this\n\nsilence 2h replacing it"
    )
    assert parse_reply(body) == Silence(2 * H, "replacing it")
    assert (
        parse_reply("> <@alertbot:example.org> silence 2h\n\nthanks") is None
    )  # the quote is not the command
    assert parse_reply("> quoted\nunack") == Unsilence()  # no blank line after the quote


@pytest.mark.parametrize(
    "body",
    [
        "@alertbot:example.org: silence 2h",
        "@alertbot:example.org silence 2h",
        "alertbot: silence 2h",
        "@alertbot, silence 2h",
        "Alert Bot: silence 2h",
        "alert bot: silence 2h",
        "> <@alice:example.org> hm\n\nAlert Bot: silence 2h",
    ],
)
def test_a_leading_mention_of_the_bot_is_stripped(body: str) -> None:
    assert parse_reply(body, BOT) == Silence(2 * H, None)


def test_a_mention_of_someone_else_is_chat() -> None:
    assert parse_reply("@alice:example.org: silence 2h", BOT) is None
    assert parse_reply("Alice: ack", BOT) is None
    assert parse_reply("alertbotty: ack", BOT) is None  # a longer name is not the bot's
    assert parse_reply("@alertbot:example.org: ack") is None  # without the bot's names: not stripped


# !alert


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("!alert", Help()),
        ("!alert help", Help()),
        ("!ALERTMANAGER Help", Help()),
        ("!alert list", ListSilences()),
        ("!alertmanager   list", ListSilences()),
        (
            "!alert expire 7c3d0a56-4b8e-4b4e-9d0e-1f2a3b4c5d6e",
            Expire("7c3d0a56-4b8e-4b4e-9d0e-1f2a3b4c5d6e"),
        ),
        (
            "!alert silence 2h alertname=DiskFull",
            SilenceMatching((eq("alertname", "DiskFull"),), 2 * H, None),
        ),
        (
            "!alert silence alertname=DiskFull 2h",
            SilenceMatching((eq("alertname", "DiskFull"),), 2 * H, None),
        ),
        (
            '!alert silence 1h30m alertname="Disk Full", instance=~"db-.*" replacing disks',
            SilenceMatching(
                (eq("alertname", "Disk Full"), Matcher("instance", "db-.*", is_regex=True, is_equal=True)),
                timedelta(minutes=90),
                "replacing disks",
            ),
        ),
        (
            '!alert silence {alertname="DiskFull",severity!="page"} 2d 3h weekend',
            SilenceMatching(
                (eq("alertname", "DiskFull"), Matcher("severity", "page", is_regex=False, is_equal=False)),
                timedelta(days=2, hours=3),
                "weekend",
            ),
        ),
        (
            "!alert silence job=node instance!~db-.* 30m",  # space-separated matchers, bare values
            SilenceMatching(
                (eq("job", "node"), Matcher("instance", "db-.*", is_regex=True, is_equal=False)),
                timedelta(minutes=30),
                None,
            ),
        ),
    ],
)
def test_bang_commands(body: str, expected: object) -> None:
    assert parse_bang(body) == expected


@pytest.mark.parametrize("body", ["", "hello", "!alerts", "!alertmanagers list", "alert list", "silence 2h"])
def test_not_a_bang_command(body: str) -> None:
    assert parse_bang(body) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("!alert frobnicate", "unknown command 'frobnicate'. usage: !alert list | !alert silence"),
        ("!alert list everything", "usage: !alert list"),
        ("!alert expire", "usage: !alert expire <silence id>"),
        ("!alert expire a b", "usage: !alert expire <silence id>"),
        ("!alert silence", "usage: !alert silence <duration> <matchers> [comment]"),
        ("!alert silence 2h", "no matchers"),
        ("!alert silence alertname=DiskFull", "a duration is missing"),
        ("!alert silence alertname=DiskFull soon", "'soon' is not a duration"),
        ("!alert silence 400d alertname=DiskFull", "'400d' is too long"),
        ('!alert silence 2h alertname=~"(" x', "alertname: bad regular expression '('"),
        ('!alert silence 2h alertname=""', "at least one matcher must not match the empty string"),
        ("!alert silence 2h instance!=db-1", "at least one matcher must not match the empty string"),
        ('!alert silence 2h alertname="DiskFull', "a closing quote is missing"),
        ("!alert silence 2h 9lives=yes", "expected a label name"),
    ],
)
def test_bad_bang_arguments_say_why(body: str, reason: str) -> None:
    answer = parse_bang(body)
    assert isinstance(answer, Invalid)
    assert answer.reason.startswith(reason)


# matchers


def test_matcher_syntax() -> None:
    assert parse_matchers('{a="b", c!="d", e=~"f.*", g!~"h"}') == (
        eq("a", "b"),
        Matcher("c", "d", is_regex=False, is_equal=False),
        Matcher("e", "f.*", is_regex=True, is_equal=True),
        Matcher("g", "h", is_regex=True, is_equal=False),
    )
    assert parse_matchers("alertname=DiskFull") == (eq("alertname", "DiskFull"),)
    assert parse_matchers(" { alertname = Disk Full , job=node, } ") == (
        eq("alertname", "Disk Full"),
        eq("job", "node"),
    )
    assert parse_matchers(r'a="say \"hi\", then \\ go\n"') == (eq("a", 'say "hi", then \\ go\n'),)
    assert parse_matchers('a="x,y}", b=""') == (eq("a", "x,y}"), eq("b", ""))
    nothing = Matcher("a", ".*", is_regex=True, is_equal=False)  # selects no alert at all, yet allowed
    assert parse_matchers('a!~".*"') == (nothing,)
    assert parse_matchers(r'i=~"db\.example\d+", t="a\tb"') == (  # other escapes stay, as in Alertmanager
        Matcher("i", r"db\.example\d+", is_regex=True, is_equal=True), eq("t", r"a\tb"))  # fmt: skip
    assert parse_matchers("a==b") == (eq("a", "=b"),)  # a bare value is everything after the operator


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no matchers"),
        ("{}", "no matchers"),
        ('a=""', "at least one matcher must not match the empty string"),
        ("a=~.*", "at least one matcher must not match the empty string"),
        ("a!=b", "at least one matcher must not match the empty string"),
        ('a=~"x|"', "at least one matcher must not match the empty string"),
        ('a=~"("', "a: bad regular expression '('"),
        ('a=~"[z-a]"', "a: bad regular expression"),
        ('a="b', "a closing quote is missing"),
        ('{a="b"', "a closing } is missing"),
        ('a="b" c="d"', "expected , at 'c=\"d\"'"),
        ("a", "expected =, !=, =~ or !~ after a"),
        ("la-bel=x", "expected =, !=, =~ or !~ after la"),
        ("1abel=x", "expected a label name at '1abel=x'"),
    ],
)
def test_bad_matchers_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(reason)):
        parse_matchers(text)


def test_matchers_for_labels_and_their_api_form() -> None:
    matchers = matchers_for({"severity": "page", "alertname": "DiskFull", "instance": "node-1"})
    assert [m.name for m in matchers] == ["alertname", "instance", "severity"]
    assert matchers[0].to_api() == {
        "name": "alertname",
        "value": "DiskFull",
        "isRegex": False,
        "isEqual": True,
    }
    assert Matcher.from_api(matchers[0].to_api()) == matchers[0]
    assert format_matchers(matchers) == '{alertname="DiskFull", instance="node-1", severity="page"}'
    assert parse_matchers(format_matchers(matchers)) == matchers


@given(st.text(max_size=20), st.booleans(), st.booleans())
def test_a_formatted_matcher_reads_back(value: str, is_regex: bool, is_equal: bool) -> None:
    matcher = Matcher("label", value, is_regex=is_regex, is_equal=is_equal)
    try:
        re.compile(value)
    except re.error:
        return
    sentinel = eq("alertname", "x")  # so the empty-string rule never applies
    assert parse_matchers(format_matchers((sentinel, matcher))) == (sentinel, matcher)
