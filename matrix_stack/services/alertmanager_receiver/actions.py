"""Acting on alerts from the room: a reaction or a reply silences the alert in Alertmanager, a
redaction or `unsilence` expires that silence, `!alert` lists, silences by matchers and expires.

Every alert message carries what a silence needs (`ALERT_FIELD`: its key and labels), so acting on
one needs no lookup of our own: the bot reads the event it was sent. Exactly once across replicas
and crashes: only the replica holding the bot's device hears the room, and each action is keyed by
the Matrix event that asked for it: the silence's comment holds that event id (Alertmanager is
asked for it before a silence is made) and the messages it causes have delivery ids made from it
(the outbox keeps one of each), so an event heard again after a takeover changes nothing.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from matrix_stack.services.alertmanager_receiver.commands import (
    HELP,
    Command,
    Expire,
    Help,
    Invalid,
    ListSilences,
    Silence,
    SilenceMatching,
    Unsilence,
    format_matchers,
    matchers_for,
    parse_bang,
    parse_reply,
)
from matrix_stack.services.alertmanager_receiver.config import ActionsConfig
from matrix_stack.services.alertmanager_receiver.silences import (
    AlertmanagerClient,
    AlertmanagerRefused,
    AlertmanagerUnavailable,
)
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.events import RoomEvent
from matrix_stack.shared.matrix.html import escape
from matrix_stack.shared.matrix.replies import format_duration, parse_duration, replied_to
from matrix_stack.shared.outbox.engine import Outgoing, Relation

log = logging.getLogger(__name__)

# In every alert message while actions are on: {"key": the alert's or group's key, "labels": {...}}.
ALERT_FIELD = "io.github.matrix_stack.alert"
_ALERT_IN_COMMENT = re.compile(r"\(alert (\$\S+) in (!\S+?)\)")


def alert_field(key: str, labels: dict[str, str]) -> dict[str, Any]:
    return {ALERT_FIELD: {"key": key, "labels": dict(sorted(labels.items()))}}


def until_resolved_marker(key: str) -> str:
    return f"until {key} resolves"


@dataclass
class AlertActions:
    config: ActionsConfig
    service: Service
    alertmanager: AlertmanagerClient
    _last_look: float = field(default=0.0, init=False)
    # Our silences seen active at the last look (id -> room, alert event), and those we ended.
    _seen: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)
    _ended: set[str] = field(default_factory=set, init=False)

    # -- what the room says -------------------------------------------------------------------------

    async def heard(self, event: RoomEvent) -> None:
        relation = event.relation
        if event.type == "m.reaction":
            if relation.get("rel_type") == "m.annotation" and relation.get("key") in self.config.reactions:
                await self._act(event, str(relation.get("event_id")), Silence(None, None), quiet=True)
        elif event.type == "m.room.redaction" and event.redacts:
            await self._unsilence_by_redaction(event, event.redacts)
        elif event.type == "m.room.message":
            body = str(event.content.get("body", ""))
            bang = parse_bang(body)
            if bang is not None:
                await self._act(event, None, bang)
                return
            target = replied_to(relation)
            command = parse_reply(body, (self.service.settings.user_id,)) if target else None
            if command is not None:
                await self._act(event, target, command)

    # -- acting ---------------------------------------------------------------------------------------

    async def _act(
        self, event: RoomEvent, target: str | None, command: Command, *, quiet: bool = False
    ) -> None:
        if isinstance(command, Invalid):
            await self._reply(event, command.reason, "invalid")
            return
        if isinstance(command, Help):
            await self._reply(event, HELP, "help")
            return
        if not self._may_act(event):
            level = self._power(event)
            await self._reply(
                event,
                f"⛔ {event.sender} may not act on alerts here: it takes power level"
                f" {self.config.power_level}"
                f" in this room (yours: {level:g}) or a place on the receiver's allow-list.",
                "refused",
            )
            log.info("refused an alert action", extra={"user": event.sender, "room": event.room_id})
            return
        try:
            if isinstance(command, Silence) and target is not None:
                await self._silence(event, target, command, quiet=quiet)
            elif isinstance(command, Unsilence) and target is not None:
                await self._unsilence(event, target)
            elif isinstance(command, SilenceMatching):
                await self._silence_matching(event, command)
            elif isinstance(command, Expire):
                expired = await self.alertmanager.expire(command.silence_id)
                text = (
                    f"Expired silence {command.silence_id}."
                    if expired
                    else (f"Silence {command.silence_id} is not active (unknown or already expired).")
                )
                log.info("silence expired from Matrix", extra=self._fields(event, silence=command.silence_id))
                await self._reply(event, text, "done")
            elif isinstance(command, ListSilences):
                await self._reply(event, await self._listing(), "done")
        except AlertmanagerUnavailable as exc:
            await self._reply(
                event,
                f"⚠️ Alertmanager is unreachable ({exc}); nothing changed. Try again in a moment.",
                "error",
            )
        except AlertmanagerRefused as exc:
            await self._reply(event, f"⚠️ Alertmanager refused: {exc.message}", "error")

    async def _silence(self, event: RoomEvent, target: str, command: Silence, *, quiet: bool) -> None:
        crypto = self.service.crypto
        alert_event = await crypto.fetch_event(event.room_id, target) if crypto is not None else None
        alert = alert_event.content.get(ALERT_FIELD) if alert_event is not None else None
        if (
            not isinstance(alert, dict)
            or alert_event is None
            or alert_event.sender != self.service.settings.user_id
        ):
            if not quiet:  # a reaction on any other message is just a reaction
                await self._reply(
                    event, "That message is not an alert I sent: reply to an alert message.", "error"
                )
            return
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        key = str(alert.get("key"))
        until_resolved = command.duration is None
        duration = command.duration or parse_duration(self.config.until_resolved_max)
        ends = datetime.now(UTC) + duration
        words = command.comment or "Silenced from Matrix"
        how = until_resolved_marker(key) if until_resolved else f"for {format_duration(duration)}"
        comment = f"{words} by {event.sender} ({how}) (alert {target} in {event.room_id})"
        silence_id = await self.alertmanager.create(
            matchers_for(labels), ends, created_by=event.sender, comment=comment, key=event.event_id
        )
        log.info("silence created from Matrix", extra=self._fields(event, silence=silence_id, alert=target))
        self._seen[silence_id] = (event.room_id, target)  # its end is noticed even before the next look
        until = "until it resolves" if until_resolved else f"until {ends:%Y-%m-%d %H:%M} UTC"
        await self._mark(event.room_id, alert_event.content, target, f"act:{event.event_id}:edit",
                         f"🔕 silenced by {event.sender} {until} (silence {silence_id[:8]}…)")  # fmt: skip

    async def _unsilence(self, event: RoomEvent, target: str) -> None:
        expired = []
        for silence in await self.alertmanager.list_active():
            if f"(alert {target} in " in silence.comment and await self.alertmanager.expire(silence.id):
                expired.append(silence.id)
                self._ended.add(silence.id)
        if not expired:
            await self._reply(event, "No active silence made from Matrix for that alert.", "done")
            return
        log.info(
            "silence expired from Matrix", extra=self._fields(event, silence=",".join(expired), alert=target)
        )
        alert_event = (
            await self.service.crypto.fetch_event(event.room_id, target) if self.service.crypto else None
        )
        if alert_event is not None:
            line = f"🔔 silence expired by {event.sender}"
            await self._mark(event.room_id, alert_event.content, target, f"act:{event.event_id}:edit", line)

    async def _unsilence_by_redaction(self, event: RoomEvent, redacted: str) -> None:
        silence = await self.alertmanager.find(redacted)
        if silence is None or not self._may_act(event):
            return
        if await self.alertmanager.expire(silence.id):
            self._ended.add(silence.id)
            fields = self._fields(event, silence=silence.id)
            log.info("silence expired: its reaction was removed", extra=fields)
            await self._note(
                silence.comment, f"act:{event.event_id}:edit", f"🔔 silence expired by {event.sender}"
            )

    async def _silence_matching(self, event: RoomEvent, command: SilenceMatching) -> None:
        ends = datetime.now(UTC) + command.duration
        words = command.comment or "Silenced from Matrix"
        comment = f"{words} by {event.sender} (for {format_duration(command.duration)})"
        silence_id = await self.alertmanager.create(
            command.matchers, ends, created_by=event.sender, comment=comment, key=event.event_id
        )
        log.info("silence created from Matrix", extra=self._fields(event, silence=silence_id))
        await self._reply(
            event, f"🔕 Silenced {format_matchers(command.matchers)} until {ends:%Y-%m-%d %H:%M} UTC"
            f" (silence {silence_id}).", "done",
        )  # fmt: skip

    async def _listing(self) -> str:
        silences = await self.alertmanager.list_active()
        if not silences:
            return "No active silences made from Matrix."
        lines = [
            f"• {s.id[:8]}… {format_matchers(s.matchers)} until {s.ends_at:%Y-%m-%d %H:%M} UTC,"
            f" by {s.created_by}"
            for s in silences
        ]
        return "Active silences made from Matrix:\n" + "\n".join(lines)

    # -- expiring what was "until resolved" ---------------------------------------------------------

    async def resolved(self, keys: list[str]) -> None:
        """These alerts (or groups) resolved: expire the silences made until they do."""
        if not keys:
            return
        try:
            for silence in await self.alertmanager.list_active():
                if any(until_resolved_marker(key) in silence.comment for key in keys):
                    await self.alertmanager.expire(silence.id)
                    log.info("silence expired: its alert resolved", extra={"silence": silence.id})
        except (AlertmanagerUnavailable, AlertmanagerRefused) as exc:
            log.warning("could not expire silences of resolved alerts", extra={"error": str(exc)})

    async def idle(self) -> None:
        """Every `look_seconds`: end the silences "until resolved" whose alerts are gone (Alertmanager
        sends no resolve for a silenced alert), and say so on the alert of any that ended otherwise
        (expired, or removed in Alertmanager's UI)."""
        if time.monotonic() - self._last_look < self.config.look_seconds:
            return
        self._last_look = time.monotonic()
        try:
            active = await self.alertmanager.list_active()
            seen: dict[str, tuple[str, str]] = {}
            for silence in active:
                where = _ALERT_IN_COMMENT.search(silence.comment)
                if where is None:
                    continue
                until_resolved = "until " in silence.comment and " resolves)" in silence.comment
                if until_resolved and not await self.alertmanager.alerts(silence.matchers):
                    if await self.alertmanager.expire(silence.id):
                        self._ended.add(silence.id)
                        log.info("silence expired: its alert resolved", extra={"silence": silence.id})
                        await self._note(
                            silence.comment, f"look:{silence.id}", "✅ resolved: silence expired"
                        )
                    continue
                seen[silence.id] = (where.group(2), where.group(1))
        except (AlertmanagerUnavailable, AlertmanagerRefused) as exc:
            log.warning("could not look at the silences", extra={"error": str(exc)})
            return
        for silence_id, (room, alert) in self._seen.items():
            if silence_id not in seen and silence_id not in self._ended:
                await self._note(f"(alert {alert} in {room})", f"look:{silence_id}", "🔔 silence ended")
        self._seen = seen

    async def _note(self, comment: str, delivery_id: str, line: str) -> None:
        """Edit the alert a silence's comment names (when the bot can read it) to add `line`."""
        where = _ALERT_IN_COMMENT.search(comment)
        crypto = self.service.crypto
        if where is None or crypto is None:
            return
        alert_event = await crypto.fetch_event(where.group(2), where.group(1))
        if alert_event is not None:
            await self._mark(where.group(2), alert_event.content, where.group(1), delivery_id, line)

    # -- who, and what the room sees ------------------------------------------------------------------

    def _power(self, event: RoomEvent) -> float:
        crypto = self.service.crypto
        return crypto.power_of(event.room_id, event.sender) if crypto is not None else 0.0

    def _may_act(self, event: RoomEvent) -> bool:
        return event.sender in self.config.allowed_users or self._power(event) >= self.config.power_level

    def _fields(self, event: RoomEvent, **more: str) -> dict[str, str]:
        return {"user": event.sender, "room": event.room_id, "event_id": event.event_id, **more}

    async def _reply(self, event: RoomEvent, text: str, what: str) -> None:
        """A notice replying to the event; one per event and outcome, however often it is heard."""
        await self.service.outbox.enqueue_many([
            Outgoing(event.room_id, content.message(text), delivery_id=f"act:{event.event_id}:{what}",
                     relation=Relation("reply", event_id=event.event_id))
        ])  # fmt: skip

    async def _mark(
        self, room: str, original: dict[str, Any], target: str, delivery_id: str, line: str
    ) -> None:
        """Edit the alert message to say what was done (the alert's own text, then `line`)."""
        new_content = original.get("m.new_content")
        shown: dict[str, Any] = new_content if isinstance(new_content, dict) else original
        body = f"{shown.get('body', '')}\n{line}"
        html = shown.get("formatted_body")
        edited = content.message(body, f"{html}<p>{escape(line)}</p>" if html else None,
                                 msgtype=shown.get("msgtype", "m.text"))  # fmt: skip
        edited.update({k: v for k, v in original.items() if k == ALERT_FIELD})
        await self.service.outbox.enqueue_many([
            Outgoing(room, edited, delivery_id=delivery_id, relation=Relation("replace", event_id=target))
        ])  # fmt: skip
