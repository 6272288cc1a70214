"""What the bot knows of a room it is in, from state events: encryption, joined members, powers.

A room is known in full from a full `/sync` or a direct read of its state, then kept current by the
incremental syncs; the sync filter asks for just the state that following rooms needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from matrix_stack.shared.matrix.events import HEARD_TYPES, Powers

STATE_TYPES = ["m.room.encryption", "m.room.member", "m.room.power_levels", "m.room.create"]


def sync_filter(listening: bool) -> str:
    """Only what following rooms needs: their encryption, members and powers, and (when a service
    listens) what people send; to-device and device lists come with every sync whatever the filter."""
    timeline = STATE_TYPES + (["m.room.encrypted", *sorted(HEARD_TYPES)] if listening else [])
    return json.dumps(
        {
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
            "room": {
                "state": {"types": STATE_TYPES, "lazy_load_members": False},
                "timeline": {"types": timeline, "limit": 100},
                "ephemeral": {"not_types": ["*"]},
                "account_data": {"not_types": ["*"]},
            },
        },
        separators=(",", ":"),
    )


@dataclass
class Room:
    encryption: dict[str, Any] | None = None
    members: set[str] = field(default_factory=set)  # joined
    powers: Powers = field(default_factory=Powers)
    read_at: float = 0.0  # monotonic time of a direct read of its state (0: followed by /sync)
    checked_at: float = 0.0  # monotonic time its encryption was last read directly


def apply_state(room: Room, event: Any) -> None:
    """A state event into what is known of the room (any other event is ignored)."""
    if not isinstance(event, dict) or event.get("state_key") is None:
        return
    kind, content = event.get("type"), event.get("content")
    if not isinstance(content, dict):
        return
    if kind == "m.room.encryption" and event.get("state_key") == "" and content.get("algorithm"):
        room.encryption = content
    elif kind == "m.room.power_levels" and event.get("state_key") == "":
        room.powers.levels = content
    elif kind == "m.room.create" and event.get("state_key") == "":
        room.powers.create = {**content, "sender": event.get("sender")}
    elif kind == "m.room.member":
        if content.get("membership") == "join":
            room.members.add(event["state_key"])
        else:
            room.members.discard(event["state_key"])
