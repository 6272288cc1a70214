"""What the bot's device keeps, and how it is kept: one row per item in the outbox's store.

Values are JSON; vodozemac objects inside are pickles encrypted with the key derived from the
encryption secret. Changes are collected and saved together, fenced by the device lease on a
shared store: a replica that lost the device cannot overwrite the state of the one that has it.

Outbound Megolm sessions are not kept: a device that starts (or takes over) begins a new session
in each room, so a message index is never used twice across a crash. What later readers need of
the old ones is kept: each room key from its first index, with the users it was shared with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import vodozemac

from matrix_stack.shared.matrix.crypto.devices import Device

ROOM_KEY_RETENTION = 30 * 24 * 3600.0  # how long a later device of a member can get an old room key
MAX_OLM_SESSIONS = 4  # per peer device: the newest few, in case the peer still uses an older one


class StateStore(Protocol):
    @property
    def description(self) -> str: ...

    async def load(self) -> dict[str, str]:
        """Every item. Raises errors.NotDurable."""
        ...

    async def save(self, puts: Mapping[str, str], deletes: Collection[str]) -> None:
        """In one transaction, only while this replica holds the device. Raises errors.NotDurable."""
        ...


class StateUnreadable(Exception):
    """The kept state cannot be decrypted or parsed (a wrong secret, a damaged row)."""


@dataclass
class RoomKey:
    """A Megolm session this device sent with, from its first index, for devices that come later."""

    room_id: str
    session_key: str  # vodozemac SessionKey at index 0 (what `m.room_key` carries)
    created: float
    users: set[str]  # members it was shared with: their later devices may have it

    def record(self) -> dict[str, Any]:
        return {
            "room": self.room_id,
            "key": self.session_key,
            "created": self.created,
            "users": sorted(self.users),
        }


@dataclass
class Inbound:
    """A room key another device sent us: what decrypts its messages (commands, replies)."""

    room_id: str
    sender_key: str
    session: vodozemac.InboundGroupSession


@dataclass
class CryptoState:
    pickle_key: bytes
    account: vodozemac.Account
    published: bool = False  # device keys uploaded
    olm: dict[str, list[vodozemac.Session]] = field(default_factory=dict)  # by peer curve25519 key
    room_keys: dict[str, RoomKey] = field(default_factory=dict)  # by session id
    devices: dict[str, dict[str, Device]] = field(default_factory=dict)  # by user, device id
    sync_token: str | None = None
    inbound: dict[str, Inbound] = field(default_factory=dict)  # by session id
    listen_since: int | None = None  # ms: events older than the first start are not acted on
    _puts: dict[str, str] = field(default_factory=dict)
    _deletes: set[str] = field(default_factory=set)

    # -- loading ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, rows: Mapping[str, str], pickle_key: bytes) -> CryptoState:
        """The kept state, or a new account when nothing is kept. Raises StateUnreadable."""
        try:
            if "account" not in rows:
                state = cls(pickle_key, vodozemac.Account())
                state.changed_account()
                return state
            account = json.loads(rows["account"])
            state = cls(
                pickle_key,
                vodozemac.Account.from_pickle(account["pickle"], pickle_key),
                bool(account["published"]),
            )
            cutoff = time.time() - ROOM_KEY_RETENTION
            for key, value in rows.items():
                kind, _, name = key.partition(":")
                if kind == "olm":
                    state.olm[name] = [
                        vodozemac.Session.from_pickle(p, pickle_key) for p in json.loads(value)
                    ]
                elif kind == "roomkey":
                    record = json.loads(value)
                    if record["created"] < cutoff:
                        state._deletes.add(key)
                        continue
                    state.room_keys[name] = RoomKey(
                        record["room"], record["key"], record["created"], set(record["users"])
                    )
                elif kind == "devices":
                    state.devices[name] = {
                        device_id: Device.from_record(name, device_id, record)
                        for device_id, record in json.loads(value).items()
                    }
                elif kind == "sync":
                    state.sync_token = json.loads(value)
                elif kind == "inbound":
                    record = json.loads(value)
                    state.inbound[name] = Inbound(
                        record["room"],
                        record["sender_key"],
                        vodozemac.InboundGroupSession.from_pickle(record["pickle"], pickle_key),
                    )
                elif kind == "listen_since":
                    state.listen_since = int(json.loads(value))
        except vodozemac.PickleException as exc:
            raise StateUnreadable(
                f"cannot decrypt the kept crypto state (a different encryption key?): {exc}"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise StateUnreadable(f"the kept crypto state is damaged: {exc!r}") from exc
        return state

    # -- changes ----------------------------------------------------------------------------------

    def changed_account(self) -> None:
        self._puts["account"] = json.dumps(
            {"pickle": self.account.pickle(self.pickle_key), "published": self.published}
        )

    def changed_olm(self, curve: str) -> None:
        sessions = self.olm.get(curve, [])[:MAX_OLM_SESSIONS]
        self.olm[curve] = sessions
        self._puts[f"olm:{curve}"] = json.dumps([s.pickle(self.pickle_key) for s in sessions])

    def changed_room_key(self, session_id: str) -> None:
        self._puts[f"roomkey:{session_id}"] = json.dumps(self.room_keys[session_id].record())

    def changed_devices(self, user_id: str) -> None:
        devices = self.devices.get(user_id)
        if devices is None:
            self._puts.pop(f"devices:{user_id}", None)
            self._deletes.add(f"devices:{user_id}")
            return
        self._deletes.discard(f"devices:{user_id}")
        self._puts[f"devices:{user_id}"] = json.dumps({d: dev.record() for d, dev in devices.items()})

    def changed_inbound(self, session_id: str) -> None:
        inbound = self.inbound[session_id]
        self._puts[f"inbound:{session_id}"] = json.dumps(
            {"room": inbound.room_id, "sender_key": inbound.sender_key,
             "pickle": inbound.session.pickle(self.pickle_key)}
        )  # fmt: skip

    def changed_listen_since(self, since: int) -> None:
        self.listen_since = since
        self._puts["listen_since"] = json.dumps(since)

    def changed_sync_token(self, token: str) -> None:
        self.sync_token = token
        self._puts["sync"] = json.dumps(token)

    @property
    def dirty(self) -> bool:
        return bool(self._puts or self._deletes)

    async def save(self, store: StateStore) -> None:
        """Write what changed; on failure the changes stay to be written next time."""
        if not self.dirty:
            return
        puts, deletes = dict(self._puts), set(self._deletes)
        await store.save(puts, deletes - puts.keys())
        for key, value in puts.items():
            if self._puts.get(key) == value:
                del self._puts[key]
        self._deletes -= deletes
