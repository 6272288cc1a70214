"""What on-call people type in reply to a Sentry issue message, parsed without I/O, and the issue
update (Sentry's `PUT /api/0/organizations/{org}/issues/{id}/` body) each one asks for.

Anything that is not a command is `None`: people chat in an issue's thread, and a reply that merely
starts with "resolve" followed by words is chat. A known command word with bad arguments is
`Invalid`, whose reason is what the bot replies."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from matrix_stack.shared.matrix.replies import (
    command_text,
    format_duration,
    looks_like_duration,
    split_word,
    take_duration,
)

ASSIGN_USAGE = "usage: assign me | assign @user:server | assign team:<team id> (unassign to clear)"
HELP = (
    "Reply to a Sentry issue message (or write in its thread) with:\n"
    "• resolve / unresolve\n"
    "• ignore [duration]: archive it until it escalates, or for a while (30m, 2h, 1d)\n"
    "• assign me | assign @user:server | assign team:<team id>; unassign\n"
    "Or react to the issue message: ✅ resolves, 🔕 archives until it escalates."
)
_TEAM = re.compile(r"team:\d+")
_USER_ID = re.compile(r"@[^:\s]+:\S+")


@dataclass(frozen=True)
class Resolve:
    pass


@dataclass(frozen=True)
class Unresolve:
    pass


@dataclass(frozen=True)
class Ignore:
    """Archive the issue: until it escalates (`duration` None), or for a while."""

    duration: timedelta | None = None


@dataclass(frozen=True)
class Assign:
    """`who`: "me", a Matrix user id, `team:<id>`, or a name whose mention says who is meant."""

    who: str


@dataclass(frozen=True)
class Unassign:
    pass


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Invalid:
    reason: str


Change = Resolve | Unresolve | Ignore | Assign | Unassign
Command = Change | Help | Invalid


def parse_reply(body: str, bot_names: Sequence[str] = ()) -> Command | None:
    """The command in a reply to an issue message, or None for chat. `bot_names`: the bot's user id
    and display names, so that `@sentry:server: resolve` counts too."""
    word, rest = split_word(command_text(body, bot_names))
    word = word.casefold()
    if word in ("resolve", "unresolve", "reopen", "unassign", "help"):
        if rest:
            return None  # "resolve it after the deploy": chat, not a command
        simple: dict[str, Command] = {"resolve": Resolve(), "unresolve": Unresolve(), "reopen": Unresolve(),
                                      "unassign": Unassign(), "help": Help()}  # fmt: skip
        return simple[word]
    if word in ("ignore", "archive"):
        if not rest:
            return Ignore()
        if not looks_like_duration(rest):
            return None
        try:
            duration, after = take_duration(rest)
        except ValueError as error:
            return Invalid(str(error))
        return (
            Ignore(duration) if not after.strip() else Invalid(f"unexpected {after.strip()!r} after {rest}")
        )
    if word == "assign":
        who = rest.strip()
        if not who or len(who.split()) > 3:
            return Invalid(ASSIGN_USAGE)
        return Assign(who)
    return None


def ignore_minutes(duration: timedelta) -> int:
    """Sentry's `ignoreDuration` is whole minutes: a duration rounds up, to at least one."""
    return max(1, math.ceil(duration.total_seconds() / 60))


def update_for(change: Change, assignee: str | None = None) -> dict[str, Any]:
    """The issue update for a change; `assignee` is Sentry's actor for `Assign` (`user:<id>`, an
    e-mail, a username or `team:<id>`)."""
    if isinstance(change, Resolve):
        return {"status": "resolved"}
    if isinstance(change, Unresolve):
        return {"status": "unresolved"}
    if isinstance(change, Ignore):
        if change.duration is None:
            return {"status": "ignored", "substatus": "archived_until_escalating"}
        return {"status": "ignored", "substatus": "archived_until_condition_met",
                "statusDetails": {"ignoreDuration": ignore_minutes(change.duration)}}  # fmt: skip
    if isinstance(change, Assign):
        if assignee is None:
            raise ValueError("assign needs the Sentry actor")
        return {"assignedTo": assignee}
    return {"assignedTo": ""}


def matrix_user(who: str, sender: str, mentions: Sequence[str]) -> str | None:
    """The Matrix user an `assign` names: `me`, a user id, or the one user a pill mentions; None for a
    team or when it cannot tell."""
    if who.casefold() == "me":
        return sender
    if _USER_ID.fullmatch(who):
        return who
    if _TEAM.fullmatch(who):
        return None
    return mentions[0] if len(mentions) == 1 else None


def sentry_actor(who: str, sender: str, mentions: Sequence[str], user_map: Mapping[str, str]) -> str:
    """Sentry's `assignedTo` for an `assign`, or ValueError saying what is missing."""
    if _TEAM.fullmatch(who):
        return who
    user = matrix_user(who, sender, mentions)
    if user is None:
        raise ValueError(f"who is {who!r}? {ASSIGN_USAGE}")
    mapped = user_map.get(user)
    if not mapped:
        raise ValueError(
            f"{user} has no Sentry user: add them to the bridge's ACTIONS_USER_MAP (Matrix user id ->"
            " Sentry user id or e-mail)"
        )
    return f"user:{mapped}" if mapped.isdigit() else mapped


_STATES = {
    ("resolved", None): "✅ resolved",
    ("resolvedInNextRelease", None): "✅ resolved in the next release",
    ("unresolved", None): "⚠️ unresolved",
    ("ignored", "archived_until_escalating"): "🔕 archived until it escalates",
    ("ignored", "archived_forever"): "🔕 archived forever",
    ("ignored", "archived_until_condition_met"): "🔕 archived",
    ("ignored", None): "🔕 archived",
}


def state_line(issue: Mapping[str, Any], by: str, change: Change) -> str:
    """One line for the issue message: the issue's state as Sentry answered it, and who changed it."""
    status = str(issue.get("status") or "")
    substatus = issue.get("substatus")
    words = _STATES.get((status, substatus)) or _STATES.get((status, None)) or f"status {status or '?'}"
    details = issue.get("statusDetails") if isinstance(issue.get("statusDetails"), dict) else {}
    minutes = details.get("ignoreDuration") if isinstance(details, dict) else None
    if status == "ignored" and isinstance(minutes, int) and minutes > 0:
        words += f" for {format_duration(timedelta(minutes=minutes))}"
    assigned = issue.get("assignedTo")
    if isinstance(assigned, dict):
        name = assigned.get("name") or assigned.get("email") or assigned.get("id")
        words += f" · 👤 {'team ' if assigned.get('type') == 'team' else ''}{name}"
    elif isinstance(change, Unassign):
        words += " · unassigned"
    return f"{words} · by {by}"
