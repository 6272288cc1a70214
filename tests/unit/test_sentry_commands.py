"""What on-call people type in reply to a Sentry issue message, the issue update each asks for, the
line the issue message gains, and Sentry's error bodies as one line (the API calls themselves,
against the Sentry stand-in: tests/integration/test_sentry_actions.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from matrix_stack.services.sentry_webhook.client import drf_message
from matrix_stack.services.sentry_webhook.commands import (
    Assign,
    Help,
    Ignore,
    Invalid,
    Resolve,
    Unassign,
    Unresolve,
    ignore_minutes,
    parse_reply,
    sentry_actor,
    state_line,
    update_for,
)

BOT = ("@sentry:example.org",)
H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("resolve", Resolve()),
        ("  Resolve ", Resolve()),
        ("@sentry:example.org: resolve", Resolve()),
        ("> <@sentry:example.org> New issue\n\nresolve", Resolve()),
        ("unresolve", Unresolve()),
        ("reopen", Unresolve()),
        ("ignore", Ignore()),
        ("archive", Ignore()),
        ("ignore 2h", Ignore(2 * H)),
        ("ignore 1h30m", Ignore(timedelta(minutes=90))),
        ("ignore 2 hours", Ignore(2 * H)),
        ("assign me", Assign("me")),
        ("assign @bob:example.org", Assign("@bob:example.org")),
        ("assign team:12", Assign("team:12")),
        ("unassign", Unassign()),
        ("help", Help()),
    ],
)
def test_commands(body: str, expected: object) -> None:
    assert parse_reply(body, BOT) == expected


@pytest.mark.parametrize(
    "body",
    [
        "resolve it after the deploy",
        "ignore that, it is noise",
        "looks resolved",
        "",
        "@alice:example.org: resolve",
    ],
)
def test_chat_is_not_a_command(body: str) -> None:
    assert parse_reply(body, BOT) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("ignore 2x", "'2x' is not a duration"),
        ("ignore 2h please", "unexpected 'please'"),
        ("assign", "usage"),
    ],
)
def test_bad_arguments_say_why(body: str, reason: str) -> None:
    answer = parse_reply(body, BOT)
    assert isinstance(answer, Invalid)
    assert answer.reason.startswith(reason)


def test_updates_are_what_sentry_takes() -> None:
    assert update_for(Resolve()) == {"status": "resolved"}
    assert update_for(Unresolve()) == {"status": "unresolved"}
    assert update_for(Ignore()) == {"status": "ignored", "substatus": "archived_until_escalating"}
    assert update_for(Ignore(2 * H)) == {
        "status": "ignored",
        "substatus": "archived_until_condition_met",
        "statusDetails": {"ignoreDuration": 120},
    }
    assert update_for(Assign("me"), "user:7") == {"assignedTo": "user:7"}
    assert update_for(Unassign()) == {"assignedTo": ""}


def test_ignore_minutes_round_up() -> None:
    assert ignore_minutes(timedelta(seconds=90)) == 2
    assert ignore_minutes(timedelta(seconds=1)) == 1
    assert ignore_minutes(timedelta(days=1)) == 1440


def test_assignees_come_from_the_map() -> None:
    users = {"@alice:example.org": "17", "@bob:example.org": "bob@example.org"}
    alice = "@alice:example.org"
    assert sentry_actor("me", alice, [], users) == "user:17"
    assert sentry_actor("@bob:example.org", alice, [], users) == "bob@example.org"
    assert sentry_actor("Bob", alice, ["@bob:example.org"], users) == "bob@example.org"  # a pill
    assert sentry_actor("team:4", alice, [], users) == "team:4"
    with pytest.raises(ValueError, match=r"@carol:example\.org has no Sentry user"):
        sentry_actor("@carol:example.org", alice, [], users)
    with pytest.raises(ValueError, match="who is 'Bob'"):
        sentry_actor("Bob", alice, [], users)


def test_state_line_shows_what_sentry_answered() -> None:
    by = "@alice:example.org"
    assert state_line({"status": "resolved"}, by, Resolve()) == f"✅ resolved · by {by}"
    archived = {
        "status": "ignored",
        "substatus": "archived_until_condition_met",
        "statusDetails": {"ignoreDuration": 120},
    }
    assert state_line(archived, by, Ignore(2 * H)) == f"🔕 archived for 2h · by {by}"
    escalating = {"status": "ignored", "substatus": "archived_until_escalating", "statusDetails": {}}
    assert state_line(escalating, by, Ignore()) == f"🔕 archived until it escalates · by {by}"
    assigned = {
        "status": "unresolved",
        "substatus": "ongoing",
        "assignedTo": {"type": "user", "name": "Jane"},
    }
    assert state_line(assigned, by, Assign("me")) == f"⚠️ unresolved · 👤 Jane · by {by}"


def test_drf_errors_read_as_one_line() -> None:
    assert drf_message({"detail": "You do not have permission to perform this action."}) == (
        "You do not have permission to perform this action."
    )
    assert (
        drf_message({"status": ['"done" is not a valid choice.']}) == 'status: "done" is not a valid choice.'
    )
    nested = {"statusDetails": {"ignoreWindow": ["Ensure this value is less than or equal to 10080."]}}
    assert (
        drf_message(nested) == "statusDetails.ignoreWindow: Ensure this value is less than or equal to 10080."
    )
    assert drf_message(["a", "b"]) == "a; b"
