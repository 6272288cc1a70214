"""A state group's full state, the delta that expresses it over another, and a digest of it that
PostgreSQL can compute too (`database.DIGEST_SQL`), so the check after a rewrite is done on what
Synapse itself will read."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

StateKey = tuple[str, str]
StateMap = dict[StateKey, str]


def delta(base: Mapping[StateKey, str] | None, state: Mapping[StateKey, str]) -> StateMap | None:
    """The rows that make `state` over `base`; None when it cannot (a delta only adds or replaces)."""
    if base is None:
        return dict(state)
    if len(base) > len(state) or any(key not in state for key in base):
        return None
    return {key: event for key, event in state.items() if base.get(key) != event}


def _part(text: str) -> str:
    return f"{len(text)}:{text}"


def digest(state: Mapping[StateKey, str]) -> tuple[int, str]:
    """(entries, md5) over the entries in byte order, each part length-prefixed, as DIGEST_SQL."""
    ordered = sorted(state.items(), key=lambda item: (item[0][0].encode(), item[0][1].encode()))
    text = "".join(_part(kind) + _part(key) + _part(event) for (kind, key), event in ordered)
    return len(state), hashlib.md5(text.encode(), usedforsecurity=False).hexdigest() if state else ""
