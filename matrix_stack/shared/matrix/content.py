"""Builders for `m.room.message` content: messages, edits, replies and thread replies.

Plain functions over dicts: the result is exactly the JSON that goes to the homeserver.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from matrix_stack.shared.matrix.html import html_to_text, sanitize

Content = dict[str, Any]
MsgType = Literal["m.notice", "m.text"]


def message(
    body: str | None = None,
    html: str | None = None,
    *,
    msgtype: MsgType = "m.notice",
    mention_users: Iterable[str] = (),
    mention_room: bool = False,
    sanitized: bool = False,
) -> Content:
    """A message with a plain `body` and, when `html` is given, a sanitised `formatted_body`.

    `sanitized`: `html` is already what `sanitize` makes of it (a formatter that writes the allowed
    subset itself, held to `sanitize` by its tests), so it is not parsed again.
    `m.mentions` is always present so clients never fall back to keyword pings from the body.
    """
    if body is None and html is None:
        raise ValueError("a message needs a body or html")
    mentions: dict[str, Any] = {}
    users = sorted(set(mention_users))
    if users:
        mentions["user_ids"] = users
    if mention_room:
        mentions["room"] = True
    content: Content = {"msgtype": msgtype}
    if html is not None:
        clean = html if sanitized else sanitize(html)
        content["body"] = body if body is not None else html_to_text(clean)
        content["format"] = "org.matrix.custom.html"
        content["formatted_body"] = clean
    else:
        content["body"] = body
    content["m.mentions"] = mentions
    return content


def edit(new: Content, original_event_id: str) -> Content:
    """Replace the content of `original_event_id` with `new` (`m.replace`)."""
    fallback: Content = {k: v for k, v in new.items() if k != "m.mentions"}
    fallback["body"] = f"* {new['body']}"
    if "formatted_body" in new:
        fallback["formatted_body"] = f"* {new['formatted_body']}"
    fallback["m.new_content"] = new
    # Mentions on an edit only ping for what the edit adds; an edit of an alert should not re-ping.
    fallback["m.mentions"] = {}
    fallback["m.relates_to"] = {"rel_type": "m.replace", "event_id": original_event_id}
    return fallback


def reply(content: Content, to_event_id: str) -> Content:
    """A rich reply to `to_event_id` (no reply fallback: removed from the spec in v1.13)."""
    return {**content, "m.relates_to": {"m.in_reply_to": {"event_id": to_event_id}}}


def thread_reply(content: Content, root_event_id: str, *, latest_event_id: str | None = None) -> Content:
    """A message in the thread rooted at `root_event_id`, with the fallback for thread-unaware clients."""
    return {
        **content,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root_event_id,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": latest_event_id or root_event_id},
        },
    }


RelationKind = Literal["replace", "reply", "thread"]


def relate(content: Content, kind: RelationKind, event_id: str) -> Content:
    """Apply a relation of `kind` to `event_id`."""
    if kind == "replace":
        return edit(content, event_id)
    if kind == "reply":
        return reply(content, event_id)
    return thread_reply(content, event_id)
