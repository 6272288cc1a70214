"""Acting on Sentry issues from the room: a reaction on an issue message resolves or archives it, a
reply (or a message in its thread) resolves, unresolves, archives for a while, assigns or unassigns
it, through Sentry's issue API; the issue message is then edited to show the new state and who
changed it.

Every issue message carries what an action needs (`ISSUE_FIELD`: the issue id, short id, project),
so acting needs no lookup of our own. Exactly once across replicas and crashes: only the replica
holding the bot's device hears the room, Sentry's update is idempotent (it sets a state), and the
messages an event causes have delivery ids made from its event id (`act:<event id>:<what>`, the
outbox keeps one of each), so an event heard again after a takeover changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from matrix_stack.services.sentry_webhook.client import SentryClient, SentryRefused, SentryUnavailable
from matrix_stack.services.sentry_webhook.commands import (
    HELP,
    Assign,
    Change,
    Command,
    Help,
    Ignore,
    Invalid,
    Resolve,
    parse_reply,
    sentry_actor,
    state_line,
    update_for,
)
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from matrix_stack.services.sentry_webhook.format import Notice
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.events import RoomEvent
from matrix_stack.shared.matrix.html import escape
from matrix_stack.shared.matrix.replies import replied_to
from matrix_stack.shared.outbox.engine import Outgoing, Relation

log = logging.getLogger(__name__)

# In every issue's first message while actions are on: {"issue": id, "short_id": ..., "project": slug}.
ISSUE_FIELD = "io.github.matrix_stack.sentry"
_VARIATION = "\ufe0f"  # clients send ✅ with or without the emoji presentation selector


def issue_field(notice: Notice) -> dict[str, Any]:
    return {ISSUE_FIELD: {"issue": notice.issue_id, "short_id": notice.short_id,
                          "project": notice.projects[0] if notice.projects else None}}  # fmt: skip


def _plain(key: Any) -> str:
    return str(key).replace(_VARIATION, "")


@dataclass
class IssueActions:
    settings: SentryWebhookSettings
    service: Service
    sentry: SentryClient

    # -- what the room says -------------------------------------------------------------------------

    async def heard(self, event: RoomEvent) -> None:
        relation = event.relation
        if event.type == "m.reaction" and relation.get("rel_type") == "m.annotation":
            key = _plain(relation.get("key"))
            change: Change | None = None
            if key in {_plain(r) for r in self.settings.actions_resolve_reactions}:
                change = Resolve()
            elif key in {_plain(r) for r in self.settings.actions_ignore_reactions}:
                change = Ignore()
            if change is not None and isinstance(relation.get("event_id"), str):
                await self._act(event, str(relation["event_id"]), change, quiet=True)
        elif event.type == "m.room.message":
            target = replied_to(relation)
            if target is None:
                return
            names = (self.service.settings.user_id,)
            command = parse_reply(str(event.content.get("body", "")), names)
            if command is not None:
                await self._act(event, target, command)

    async def idle(self) -> None:
        """Nothing to look at between syncs: Sentry tells its changes by webhook."""

    # -- acting ---------------------------------------------------------------------------------------

    async def _act(self, event: RoomEvent, target: str, command: Command, *, quiet: bool = False) -> None:
        thread = target if event.relation.get("rel_type") == "m.thread" else None
        if isinstance(command, Invalid):
            await self._answer(event, thread, command.reason, "invalid")
            return
        if isinstance(command, Help):
            await self._answer(event, thread, HELP, "help")
            return
        crypto = self.service.crypto
        issue_event = await crypto.fetch_event(event.room_id, target) if crypto is not None else None
        issue = issue_event.content.get(ISSUE_FIELD) if issue_event is not None else None
        if (
            issue_event is None
            or not isinstance(issue, dict)
            or not issue.get("issue")
            or issue_event.sender != self.service.settings.user_id
        ):
            if not quiet:  # a ✅ on any other message is just a reaction
                await self._answer(event, thread, "That message is not a Sentry issue I posted: reply to"
                                   " an issue's first message or write in its thread.", "error")  # fmt: skip
            return
        issue_id, name = str(issue["issue"]), str(issue.get("short_id") or issue["issue"])
        if not self._may_act(event):
            await self._answer(
                event, target,
                f"⛔ {event.sender} may not act on Sentry issues here: it takes power level"
                f" {self.settings.actions_power_level} in this room (yours: {self._power(event):g}) or a"
                " place on the bridge's ACTIONS_ALLOWED_USERS.", "refused",
            )  # fmt: skip
            log.info("refused a Sentry action", extra=self._fields(event, issue=issue_id))
            return
        try:
            changes = update_for(command, self._actor(event, command))
        except ValueError as error:
            await self._answer(event, target, f"⚠️ {error}", "invalid")
            return
        try:
            answer = await self.sentry.update(issue_id, changes)
        except SentryUnavailable as error:
            await self._answer(event, target, f"⚠️ {error}; nothing changed in {name}.", "error")
            return
        except SentryRefused as error:
            await self._answer(event, target, f"⚠️ Sentry refused to change {name}: {_why(error)}", "error")
            log.warning(
                "Sentry refused an action", extra=self._fields(event, issue=issue_id, error=str(error))
            )
            return
        what = type(command).__name__.lower()
        log.info("Sentry issue changed from Matrix", extra=self._fields(event, issue=issue_id, change=what))
        await self._mark(event.room_id, issue_event.content, target, f"act:{event.event_id}:edit",
                         state_line(answer, event.sender, command))  # fmt: skip

    def _actor(self, event: RoomEvent, command: Change) -> str | None:
        if not isinstance(command, Assign):
            return None
        mentions = event.content.get("m.mentions")
        users = mentions.get("user_ids") if isinstance(mentions, dict) else None
        named = [u for u in users or () if isinstance(u, str) and u != self.service.settings.user_id]
        return sentry_actor(command.who, event.sender, named, self.settings.actions_user_map)

    # -- who, and what the room sees ------------------------------------------------------------------

    def _power(self, event: RoomEvent) -> float:
        crypto = self.service.crypto
        return crypto.power_of(event.room_id, event.sender) if crypto is not None else 0.0

    def _may_act(self, event: RoomEvent) -> bool:
        return (
            event.sender in self.settings.actions_allowed_users
            or self._power(event) >= self.settings.actions_power_level
        )

    def _fields(self, event: RoomEvent, **more: str) -> dict[str, str]:
        return {"user": event.sender, "room": event.room_id, "event_id": event.event_id, **more}

    async def _answer(self, event: RoomEvent, thread: str | None, text: str, what: str) -> None:
        """A notice answering the event, in the issue's thread when there is one; one per event and
        outcome, however often it is heard."""
        body = content.message(text)
        relation = None
        if thread is not None:  # in the thread; a reaction cannot be replied to, so it falls back
            is_message = event.type == "m.room.message"
            body["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread,
                "is_falling_back": not is_message,
                "m.in_reply_to": {"event_id": event.event_id if is_message else thread},
            }
        else:
            relation = Relation("reply", event_id=event.event_id)
        await self.service.outbox.enqueue_many(
            [Outgoing(event.room_id, body, delivery_id=f"act:{event.event_id}:{what}", relation=relation)]
        )

    async def _mark(
        self, room: str, original: dict[str, Any], target: str, delivery_id: str, line: str
    ) -> None:
        """Edit the issue message: its own text, then `line` (the latest state replaces the last)."""
        new_content = original.get("m.new_content")
        shown: dict[str, Any] = new_content if isinstance(new_content, dict) else original
        html = shown.get("formatted_body")
        edited = content.message(f"{shown.get('body', '')}\n{line}",
                                 f"{html}<br>{escape(line)}" if html else None,
                                 msgtype=shown.get("msgtype", "m.notice"))  # fmt: skip
        edited.update({k: v for k, v in original.items() if k == ISSUE_FIELD})
        await self.service.outbox.enqueue_many(
            [Outgoing(room, edited, delivery_id=delivery_id, relation=Relation("replace", event_id=target))]
        )


def _why(error: SentryRefused) -> str:
    """Sentry's reason, with what it means for the bridge's token where that is the cause."""
    if error.status == 401:
        return f"{error.message} (the bridge's token is not accepted: check SENTRY_TOKEN)"
    if error.status == 403:
        return f"{error.message} (the bridge's integration lacks Issue & Event write access)"
    if error.status == 404:
        return f"{error.message} (no such issue in SENTRY_ORGANIZATION, or it was deleted)"
    return error.message


def actions_for(settings: SentryWebhookSettings, service: Service) -> IssueActions | None:
    """Acting from the room, when Sentry's API is configured and the bot follows its rooms."""
    if not settings.actions_enabled or service.crypto is None or settings.sentry_token is None:
        return None
    client = SentryClient(
        settings.sentry_url, str(settings.sentry_organization), settings.sentry_token.get_secret_value()
    )
    actions = IssueActions(settings, service, client)
    service.crypto.listener = actions
    return actions
