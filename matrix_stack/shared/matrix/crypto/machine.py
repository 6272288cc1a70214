"""The bot's device at work: keys published, rooms followed through `/sync`, messages encrypted.

One replica at a time uses the device (`activate` when it takes the device lease, `deactivate` when
it loses it). Every other replica, and this one while the device is not ready, refuses to encrypt:
the message stays queued. Whether a room is encrypted is known from `/sync` (the holder) or read
from the room's state, so nothing is ever sent in the clear to a room that has encryption on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from matrix_stack.shared.kit.errors import NotDurable
from matrix_stack.shared.matrix.crypto import megolm, olm
from matrix_stack.shared.matrix.crypto.canonical import verify
from matrix_stack.shared.matrix.crypto.devices import MEGOLM, OLM, Device, Sharing, devices_of, receives_keys
from matrix_stack.shared.matrix.crypto.keys import (
    cross_signing_upload,
    device_keys,
    fallback_keys,
    one_time_keys,
    signed_device,
)
from matrix_stack.shared.matrix.crypto.megolm import Outbound
from matrix_stack.shared.matrix.crypto.metrics import CryptoMetrics
from matrix_stack.shared.matrix.crypto.rooms import STATE_TYPES, Room, apply_state, sync_filter
from matrix_stack.shared.matrix.crypto.secret import DerivedKeys
from matrix_stack.shared.matrix.crypto.state import CryptoState, StateStore, StateUnreadable
from matrix_stack.shared.matrix.errors import HomeserverUnavailable, MatrixError
from matrix_stack.shared.matrix.events import HEARD_TYPES, Listener, RoomEvent

log = logging.getLogger(__name__)

OTK_TARGET = 25  # one-time keys kept on the server: half what the account holds
# Seconds a room read as unencrypted is believed: /sync brings encryption being turned on within
# moments, but a message sent in those moments would go out in the clear, so the state is read again.
UNENCRYPTED_RECHECK = 1.0
SYNC_TIMEOUT_MS = 30_000
TO_DEVICE_CHUNK = 200  # devices per /sendToDevice request
GAP_LIMIT = 1000  # events read back to fill a limited sync's gap
# A device with no one-time key on the server yet (Synapse announces a new device before it stores
# the device's one-time keys) is owed its room keys: tried again after 1, 2, 4 ... 30 s, ~3 min in all.
OWED_TRIES = 10
OWED_MAX_DELAY = 30.0


class Api(Protocol):
    user_id: str

    @property
    def device_id(self) -> str: ...

    async def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, *,
        query: dict[str, str] | None = None, timeout: float = 30.0,
    ) -> dict[str, Any]:  # fmt: skip
        """Raises HomeserverUnavailable, MatrixError."""
        ...


class CannotEncrypt(MatrixError):
    """The room is encrypted and this message cannot be encrypted now: it stays queued."""

    def __init__(self, room_id: str, reason: str) -> None:
        super().__init__(None, f"not sent: room {room_id} is encrypted and {reason}", None)


@dataclass
class Owed:
    """Room keys a device is owed: it had no one-time key to start an Olm session with."""

    device: Device
    sessions: set[str]
    tries: int
    due: float  # time.monotonic()


def _path(*parts: str) -> str:
    return "/".join(urllib.parse.quote(part, safe="") for part in parts)


class Crypto:
    """Encryption for one bot account's device, used by one replica at a time."""

    def __init__(
        self,
        api: Api,
        keys: DerivedKeys | None,
        *,
        enabled: bool = True,
        sharing: Sharing = "members",
        allowlist: Sequence[str] = (),
        metrics: CryptoMetrics | None = None,
        on_invite: Callable[[str, str | None], Awaitable[None]] | None = None,
    ) -> None:
        self.api = api
        self.keys = keys
        self.enabled = enabled
        self.sharing: Sharing = sharing
        self.allowlist = tuple(allowlist)
        self.metrics = metrics
        self.on_invite = on_invite
        self._state: CryptoState | None = None
        self._store: StateStore | None = None
        self._problem = (
            "this replica does not hold the bot's device (another replica sends)"
            if enabled
            else "encryption is turned off (ENCRYPTION=false)"
        )
        self._ready = False
        self._rooms: dict[str, Room] = {}
        self._outbound: dict[str, Outbound] = {}
        self._outdated: set[str] = set()
        self._room_locks: dict[str, asyncio.Lock] = {}
        self._owed: dict[tuple[str, str], Owed] = {}
        self._lock = asyncio.Lock()  # the account, Olm sessions and device lists
        self.listener: Listener | None = None  # set by a service that acts on what people send
        self._task: asyncio.Task[None] | None = None

    # -- holding the device ---------------------------------------------------------------------

    async def activate(self, store: StateStore) -> None:
        """Take up the device: load its state, then publish keys and follow rooms in the background."""
        assert self.keys is not None, "encryption is off"
        try:
            state = CryptoState.load(await store.load(), self.keys.pickle_key)
        except (StateUnreadable, NotDurable) as exc:
            self._problem = f"the crypto state in {store.description} cannot be read: {exc}"
            log.error("encryption unavailable", extra={"reason": self._problem})
            return
        self._state, self._store = state, store
        if state.listen_since is None:
            state.changed_listen_since(int(time.time() * 1000))
        self._outdated = set(state.devices)  # changes while no replica followed are unknown
        self._problem = "the device's keys are not published yet"
        try:  # before the first message, when the homeserver answers; else the loop tries again
            await asyncio.wait_for(self._become_ready(), 30)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("publishing the device's keys failed; trying again", extra={"error": str(exc)})
        self._task = asyncio.create_task(self._follow(), name="crypto-sync")

    async def deactivate(self, reason: str = "this replica no longer holds the bot's device") -> None:
        self._problem = reason
        self._ready = False
        if self.metrics:
            self.metrics.ready.set(0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._state = self._store = None
        self._outbound.clear()
        self._rooms.clear()
        self._owed.clear()

    @property
    def ready(self) -> bool:
        return self._ready

    # -- sending --------------------------------------------------------------------------------

    async def prepare(
        self, room_id: str, event_type: str, content: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """The event to send: encrypted when the room is. Raises CannotEncrypt (keep it queued),
        HomeserverUnavailable, MatrixError."""
        encryption = await self.room_encryption(room_id)
        if encryption is None:
            return event_type, content
        lock = self._room_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            try:
                return await self._encrypt(room_id, encryption, event_type, content)
            except CannotEncrypt as exc:
                self._failed("unavailable" if self.enabled else "disabled", room_id, exc.message)
                raise
            except NotDurable as exc:
                self._failed("store", room_id, str(exc))
                raise CannotEncrypt(room_id, f"the crypto state cannot be saved: {exc}") from exc
            except (HomeserverUnavailable, MatrixError) as exc:
                self._failed("homeserver", room_id, str(exc))
                raise

    def _failed(self, reason: str, room_id: str, message: str) -> None:
        if self.metrics:
            self.metrics.failures.labels(reason=reason).inc()
        log.error("cannot encrypt; the message stays queued", extra={"room": room_id, "reason": message})

    async def room_encryption(self, room_id: str) -> dict[str, Any] | None:
        """The room's `m.room.encryption` content, None when it is not encrypted."""
        room = self._rooms.get(room_id)
        if room is not None and (room.encryption is not None or self._trusted(room)):
            return room.encryption
        if room is not None:  # followed or read before: only whether encryption is on now
            try:
                room.encryption = await self.api.api(
                    "GET", f"/_matrix/client/v3/rooms/{_path(room_id)}/state/m.room.encryption/"
                )
            except MatrixError as exc:
                if exc.status != 404:
                    raise
            room.checked_at = time.monotonic()
            return room.encryption
        state = await self.api.api("GET", f"/_matrix/client/v3/rooms/{_path(room_id)}/state")
        fresh = Room(read_at=time.monotonic(), checked_at=time.monotonic())
        for event in state.get("state", state) if isinstance(state, dict) else state:
            apply_state(fresh, event)
        known = self._rooms.get(room_id)
        if known is not None and known.encryption is not None:
            fresh.encryption = known.encryption  # encryption is never turned off
        self._rooms[room_id] = fresh
        return fresh.encryption

    def _trusted(self, room: Room) -> bool:
        """Whether `room` read as unencrypted may be believed: it was read a moment ago."""
        return room.checked_at > 0.0 and time.monotonic() - room.checked_at < UNENCRYPTED_RECHECK

    async def _encrypt(
        self, room_id: str, encryption: dict[str, Any], event_type: str, content: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        if not self._ready or self._state is None:
            raise CannotEncrypt(room_id, self._problem)
        if encryption.get("algorithm") != MEGOLM:
            raise CannotEncrypt(room_id, f"its algorithm {encryption.get('algorithm')!r} is not {MEGOLM}")
        state = self._state
        room = self._rooms[room_id]  # known in full: read by room_encryption, then kept by /sync
        await self._query_devices(room.members)
        targets = [
            device
            for user in sorted(room.members)
            for device in state.devices.get(user, {}).values()
            if receives_keys(device, self.sharing, self.allowlist)
            and not (user == self.api.user_id and device.device_id == self.api.device_id)
        ]
        wanted = {(d.user_id, d.device_id, d.curve25519) for d in targets}
        out = self._outbound.get(room_id)
        if out is None or out.expired(encryption) or not out.shared <= wanted:
            out = megolm.new_session(state, room_id)
            self._outbound[room_id] = out
        room_key = state.room_keys[out.session.session_id]
        if not room.members <= room_key.users:  # members while it is used: their later devices get it
            room_key.users |= room.members
            state.changed_room_key(out.session.session_id)
        missing = [d for d in targets if (d.user_id, d.device_id, d.curve25519) not in out.shared]
        if missing:
            sent = await self._send_room_key(room_id, out.session.session_id, missing, why="message")
            out.shared |= {(d.user_id, d.device_id, d.curve25519) for d in sent}
        else:
            await self._save()  # a new session's key, kept before any message uses it
        encrypted = megolm.encrypt(state, out, self.api.device_id, room_id, event_type, content)
        if self.metrics:
            self.metrics.encrypted.inc()
        return "m.room.encrypted", encrypted

    # -- devices and Olm ------------------------------------------------------------------------

    async def _query_devices(self, users: Iterable[str]) -> None:
        state = self._state
        assert state is not None
        wanted = sorted(u for u in users if u not in state.devices or u in self._outdated)
        if not wanted:
            return
        async with self._lock:
            wanted = [u for u in wanted if u not in state.devices or u in self._outdated]
            if not wanted:
                return
            answer = await self.api.api(
                "POST", "/_matrix/client/v3/keys/query", {"device_keys": {u: [] for u in wanted}}
            )
            failed = set(answer.get("failures", {}))
            appeared: list[Device] = []
            for user in wanted:
                if user.split(":", 1)[-1] in failed and user in state.devices:
                    continue  # their server did not answer: keep what we knew, ask again later
                found = devices_of(answer, user)
                before = state.devices.get(user)
                if before is not None:
                    appeared += [
                        d for d in found.values()
                        if d.device_id not in before or before[d.device_id].curve25519 != d.curve25519
                    ]  # fmt: skip
                state.devices[user] = found
                state.changed_devices(user)
                self._outdated.discard(user)
        if appeared:
            await self._share_earlier_keys(appeared)

    async def _share_earlier_keys(self, devices: list[Device]) -> None:
        """A member's new device gets the room keys its owner had: it reads what was sent before it."""
        assert self._state is not None
        for device in devices:
            if not receives_keys(device, self.sharing, self.allowlist):
                continue
            for session_id, room_key in list(self._state.room_keys.items()):
                if device.user_id in room_key.users:
                    with contextlib.suppress(HomeserverUnavailable, MatrixError):
                        await self._send_room_key(room_key.room_id, session_id, [device], why="new-device")

    async def _sessions_for(self, devices: list[Device]) -> list[Device]:
        """Make sure each device has an Olm session with us; those that have one (or got one)."""
        state = self._state
        assert state is not None
        lacking = [d for d in devices if not state.olm.get(d.curve25519)]
        if lacking:
            claim: dict[str, dict[str, str]] = {}
            for device in lacking:
                claim.setdefault(device.user_id, {})[device.device_id] = "signed_curve25519"
            answer = await self.api.api("POST", "/_matrix/client/v3/keys/claim", {"one_time_keys": claim})
            claimed = answer.get("one_time_keys", {})
            for device in lacking:
                key_objs = (claimed.get(device.user_id, {}).get(device.device_id) or {}).values()
                if not olm.start_session(state, device, key_objs):
                    log.warning(
                        "a device has no one-time key left: it gets this room key later",
                        extra={"user": device.user_id, "device": device.device_id},
                    )
        return [d for d in devices if state.olm.get(d.curve25519)]

    async def _send_room_key(
        self, room_id: str, session_id: str, devices: list[Device], *, why: str
    ) -> list[Device]:
        """Send a room key over Olm; the devices it went to. Everything the encryption changed is
        saved before anything is sent, so no Olm message index is ever used twice."""
        state = self._state
        assert state is not None
        room_key = state.room_keys[session_id]
        async with self._lock:
            reachable = await self._sessions_for(devices)
            for device in devices:
                if device not in reachable:
                    self._owe(device, session_id)
            content = {
                "algorithm": MEGOLM,
                "room_id": room_id,
                "session_id": session_id,
                "session_key": room_key.session_key,
            }
            messages: dict[str, dict[str, Any]] = {}
            for device in reachable:
                messages.setdefault(device.user_id, {})[device.device_id] = olm.encrypt(
                    state, self.api.user_id, self.api.device_id, device, "m.room_key", content
                )
            await self._save()
        batch: list[tuple[str, str, Any]] = [(u, d, c) for u, by in messages.items() for d, c in by.items()]
        for start in range(0, len(batch), TO_DEVICE_CHUNK):
            chunk: dict[str, dict[str, Any]] = {}
            for user, device_id, message in batch[start : start + TO_DEVICE_CHUNK]:
                chunk.setdefault(user, {})[device_id] = message
            await self.api.api(
                "PUT",
                f"/_matrix/client/v3/sendToDevice/m.room.encrypted/{uuid.uuid4().hex}",
                {"messages": chunk},
            )
        if self.metrics and reachable:
            self.metrics.shared.labels(why=why).inc(len(reachable))
        return reachable

    def _owe(self, device: Device, session_id: str) -> None:
        owed = self._owed.get((device.user_id, device.device_id))
        if owed is None or owed.device.curve25519 != device.curve25519:
            owed = Owed(device, set(), 0, time.monotonic() + 1.0)
            self._owed[(device.user_id, device.device_id)] = owed
        owed.sessions.add(session_id)

    def _owed_wait(self) -> float | None:
        """Seconds until an owed room key is due again; None when none is owed."""
        if not self._owed:
            return None
        return max(0.0, min(o.due for o in self._owed.values()) - time.monotonic())

    async def _pay_owed(self) -> None:
        """Send the room keys owed to devices that had no one-time key when they were due."""
        state = self._state
        if state is None:
            return
        now = time.monotonic()
        for key, owed in list(self._owed.items()):
            if owed.due > now:
                continue
            del self._owed[key]
            device = state.devices.get(owed.device.user_id, {}).get(owed.device.device_id)
            if device is None or device.curve25519 != owed.device.curve25519:
                continue  # gone, or replaced by a device with new keys (which is owed its own)
            remaining = set(owed.sessions)
            try:
                for session_id in sorted(owed.sessions):
                    room_key = state.room_keys.get(session_id)
                    if room_key is None or device.user_id not in room_key.users:
                        remaining.discard(session_id)
                    elif await self._send_room_key(room_key.room_id, session_id, [device], why="owed"):
                        remaining.discard(session_id)
                        out = self._outbound.get(room_key.room_id)
                        if out is not None and out.session.session_id == session_id:
                            out.shared.add((device.user_id, device.device_id, device.curve25519))
            except (HomeserverUnavailable, MatrixError) as exc:
                log.warning("could not send an owed room key", extra={"error": str(exc)})
            self._owed.pop(key, None)  # what _send_room_key noted again: the count goes on below
            tries = owed.tries + 1
            if remaining and tries < OWED_TRIES:
                self._owed[key] = Owed(device, remaining, tries, now + min(OWED_MAX_DELAY, 2.0**tries))
            elif remaining:
                log.warning(
                    "gave up sending room keys to a device with no one-time key; it can ask for them",
                    extra={"user": device.user_id, "device": device.device_id, "keys": len(remaining)},
                )

    async def _save(self) -> None:
        if self._state is not None and self._store is not None:
            await self._state.save(self._store)

    # -- keys of the device ---------------------------------------------------------------------

    async def _publish(self, counts: dict[str, Any] | None, fallback_types: list[str] | None) -> None:
        """Upload the device keys (once), top up one-time keys, replace a used fallback key. The
        account is saved before the upload: a published key's private half is never lost."""
        state = self._state
        assert state is not None
        body: dict[str, Any] = {}
        if not state.published:
            await self._check_device_is_ours()
            keys = device_keys(state.account, self.api.user_id, self.api.device_id)
            # Signed before anyone sees it: a reader that queries the device between an upload and a
            # later signature caches it as unsigned and hides its messages (MSC4153).
            try:
                if self.keys is not None and await self._identity_is_ours():
                    keys = signed_device(keys, self.api.user_id, self.keys.self_signing)
            except MatrixError as exc:  # published unsigned; signed afterwards when that works
                log.error("cross-signing the bot's account failed", extra={"error": str(exc)})
            body["device_keys"] = keys
        if counts is None:  # the server's count is not known yet: ask (an empty upload answers it)
            counts = (await self.api.api("POST", "/_matrix/client/v3/keys/upload", {}))["one_time_key_counts"]
        on_server = int(counts.get("signed_curve25519", 0))
        if on_server < OTK_TARGET:
            state.account.generate_one_time_keys(OTK_TARGET - on_server)
        if (fallback_types is not None and "signed_curve25519" not in fallback_types) or not state.published:
            state.account.generate_fallback_key()  # type: ignore[attr-defined]  # missing from its stubs
        otks = one_time_keys(state.account, self.api.user_id, self.api.device_id)
        fallback = fallback_keys(state.account, self.api.user_id, self.api.device_id)
        if otks:
            body["one_time_keys"] = otks
        if fallback:
            body["fallback_keys"] = fallback
        if not body:
            return
        state.changed_account()
        await self._save()
        await self.api.api("POST", "/_matrix/client/v3/keys/upload", body)
        state.account.mark_keys_as_published()
        state.published = True
        state.changed_account()
        await self._save()

    async def _check_device_is_ours(self) -> None:
        """A new account on a device that already has other keys: the crypto state was lost."""
        assert self._state is not None
        me, device_id = self.api.user_id, self.api.device_id
        answer = await self.api.api(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {me: [device_id]}}
        )
        existing = (answer.get("device_keys", {}).get(me) or {}).get(device_id)
        ours = self._state.account.curve25519_key.to_base64()
        if existing and existing.get("keys", {}).get(f"curve25519:{device_id}") != ours:
            raise CannotEncrypt(
                "(every room)",
                f"device {device_id} already has encryption keys this crypto state does not hold (was the"
                " state lost?): log the bot in as a new device (remove its session) to start again",
            )

    async def _identity_is_ours(self) -> bool:
        """Give the account its cross-signing identity (derived from the secret) unless it has one;
        whether the account's identity is the one this secret makes."""
        me = self.api.user_id
        assert self.keys is not None
        master = self.keys.master
        answer = await self.api.api("POST", "/_matrix/client/v3/keys/query", {"device_keys": {me: []}})
        on_server = answer.get("master_keys", {}).get(me)
        if on_server is None:
            upload = cross_signing_upload(me, self.keys)
            await self.api.api("POST", "/_matrix/client/v3/keys/device_signing/upload", upload)
            log.info("cross-signing set up for the bot's account", extra={"master_key": master.public})
            return True
        if on_server.get("keys", {}).get(master.key_id) != master.public:
            log.error(
                "the bot's account has a cross-signing identity this encryption key did not make; its device"
                " stays unsigned (clients that exclude unsigned devices will not show its messages)",
                extra={"user": me},
            )
            return False
        return True

    async def _cross_sign(self) -> None:
        """Sign this device with the account's identity when it is not yet (a device published
        before it had one), so clients that exclude unsigned devices (MSC4153) still read the bot."""
        me, device_id = self.api.user_id, self.api.device_id
        assert self.keys is not None
        self_signing = self.keys.self_signing
        if not await self._identity_is_ours():
            return
        answer = await self.api.api(
            "POST", "/_matrix/client/v3/keys/query", {"device_keys": {me: [device_id]}}
        )
        device = (answer.get("device_keys", {}).get(me) or {}).get(device_id)
        if device is None:
            return
        if verify(device, me, self_signing.key_id, self_signing.public):
            return
        signed = signed_device(device, me, self_signing)
        result = await self.api.api(
            "POST", "/_matrix/client/v3/keys/signatures/upload", {me: {device_id: signed}}
        )
        if result.get("failures"):
            log.error("signing the bot's device failed", extra={"failures": json.dumps(result["failures"])})
        else:
            log.info("the bot's device is signed by its account", extra={"device": device_id})

    # -- following rooms ------------------------------------------------------------------------

    async def _become_ready(self) -> None:
        await self._publish(None, None)
        try:
            await self._cross_sign()
        except MatrixError as exc:
            log.error("cross-signing the bot's device failed", extra={"error": str(exc)})
        self._ready = True
        self._problem = ""
        if self.metrics:
            self.metrics.ready.set(1)
        log.info("encryption ready", extra={"device": self.api.device_id})

    async def _follow(self) -> None:
        """Publish keys until that works, then long-poll /sync and act on what it brings."""
        # Where the last holder stopped, so that a takeover hears what came since (and sees the
        # to-device messages it did not acknowledge); a first start makes a full sync.
        since: str | None = self._state.sync_token if self._state is not None else None
        delay = 1.0
        while True:
            try:
                if not self._ready:
                    await self._become_ready()
                wait = self._owed_wait()
                timeout = SYNC_TIMEOUT_MS if wait is None else min(SYNC_TIMEOUT_MS, int(wait * 1000))
                query = {
                    "filter": sync_filter(self.listener is not None),
                    "timeout": str(timeout if since else 0),
                }
                if since:
                    query["since"] = since
                answer = await self.api.api(
                    "GET", "/_matrix/client/v3/sync", query=query, timeout=SYNC_TIMEOUT_MS / 1000 + 30
                )
                await self._handle_sync(answer, initial=since is None, since=since)
                await self._pay_owed()
                if self.listener is not None:
                    try:
                        await self.listener.idle()
                    except Exception:
                        log.exception("a listener's look failed")
                since = str(answer["next_batch"])
                if self._state is not None:
                    self._state.changed_sync_token(since)
                    await self._save()
                delay = 1.0
                continue
            except asyncio.CancelledError:
                raise
            except CannotEncrypt as exc:
                self._problem = exc.message.split(" and ", 1)[-1]
                log.error("encryption unavailable", extra={"reason": self._problem})
                delay = 60.0
            except (HomeserverUnavailable, MatrixError, NotDurable, KeyError, ValueError) as exc:
                log.warning("following the bot's rooms failed; trying again", extra={"error": str(exc)})
            except Exception:
                log.exception("following the bot's rooms failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _gap(self, room_id: str, prev_batch: str, since: str) -> list[dict[str, Any]]:
        """What a limited sync left out of a room's timeline since `since`, oldest first (a replica
        taking over hears every event the last one did not get to)."""
        missed: list[dict[str, Any]] = []
        token = prev_batch
        types = {"types": ["m.room.encrypted", *sorted(HEARD_TYPES), *STATE_TYPES]}
        while token and len(missed) < GAP_LIMIT:
            page = await self.api.api(
                "GET", f"/_matrix/client/v3/rooms/{_path(room_id)}/messages",
                query={"dir": "b", "from": token, "to": since, "limit": "100", "filter": json.dumps(types)},
            )  # fmt: skip
            chunk = page.get("chunk") or []
            missed += chunk
            token = str(page.get("end") or "") if chunk else ""
        return list(reversed(missed))

    async def _handle_sync(self, answer: dict[str, Any], *, initial: bool, since: str | None = None) -> None:
        rooms = answer.get("rooms", {})
        heard: list[tuple[str, dict[str, Any]]] = []
        for room_id, joined in rooms.get("join", {}).items():
            room = self._rooms.get(room_id)
            if initial:  # a full sync: every joined room's whole state
                room = Room(encryption=room.encryption if room else None)
                self._rooms[room_id] = room
            # An incremental sync holds changes only: applied to a room known in full (from a full
            # sync or a read of its state); a room not known is read in full when it is needed.
            before = set(room.members) if room is not None else set()
            timeline = joined.get("timeline", {})
            events = timeline.get("events", [])
            if timeline.get("limited") and since and self.listener is not None:
                events = await self._gap(room_id, str(timeline.get("prev_batch", "")), since) + events
            for event in [*joined.get("state", {}).get("events", []), *events]:
                if room is not None:
                    apply_state(room, event)
            if self.listener is not None:
                heard += [(room_id, event) for event in events if "state_key" not in event]
            if room is not None and before - room.members and room_id in self._outbound:
                log.info("members left: the room's next message uses a new room key", extra={"room": room_id})
        for room_id in rooms.get("leave", {}):
            self._rooms.pop(room_id, None)
            self._outbound.pop(room_id, None)
        if self.on_invite is not None:
            for room_id, invited in rooms.get("invite", {}).items():
                inviter = next(
                    (
                        e.get("sender")
                        for e in invited.get("invite_state", {}).get("events", [])
                        if e.get("type") == "m.room.member" and e.get("state_key") == self.api.user_id
                    ),
                    None,
                )
                await self.on_invite(room_id, inviter)
        if not self.enabled or self._state is None:
            return
        lists = answer.get("device_lists", {})
        for user in lists.get("changed", []):
            if user in self._state.devices:
                self._outdated.add(user)
        for user in lists.get("left", []):
            if self._state.devices.pop(user, None) is not None:
                self._state.changed_devices(user)
        if self._outdated:  # now, not at the next message: a member's new device gets earlier keys
            try:
                await self._query_devices(sorted(self._outdated))
            except (HomeserverUnavailable, MatrixError) as exc:
                log.warning("could not look up changed devices", extra={"error": str(exc)})
        for event in answer.get("to_device", {}).get("events", []):
            try:
                await self._to_device(event)
            except (HomeserverUnavailable, MatrixError) as exc:
                log.warning(
                    "could not answer a to-device message",
                    extra={"type": event.get("type"), "error": str(exc)},
                )
        for room_id, event in heard:  # after to-device: the room keys they need came with them
            await self._hand_over(room_id, event)
        counts = answer.get("device_one_time_keys_count")
        fallback = answer.get("device_unused_fallback_key_types")
        if isinstance(counts, dict) and (
            int(counts.get("signed_curve25519", 0)) < OTK_TARGET
            or (isinstance(fallback, list) and "signed_curve25519" not in fallback)
        ):
            await self._publish(counts, fallback if isinstance(fallback, list) else None)
        await self._save()

    async def _hand_over(self, room_id: str, raw: dict[str, Any]) -> None:
        state, listener = self._state, self.listener
        if state is None or listener is None or raw.get("sender") == self.api.user_id:
            return
        if int(raw.get("origin_server_ts", 0)) < (state.listen_since or 0):
            return  # from before the bot listened: not acted on
        event = megolm.in_clear(self._state, room_id, raw)
        if event is None or event.type not in HEARD_TYPES:
            return
        if room_id not in self._rooms:
            await self.room_encryption(room_id)  # its state in full: who may act there
        try:
            await listener.heard(event)
        except Exception:
            log.exception(
                "acting on a room event failed", extra={"room": room_id, "event_id": event.event_id}
            )

    async def fetch_event(self, room_id: str, event_id: str) -> RoomEvent | None:
        """One event of a room, in the clear when the bot can decrypt it; None when it cannot."""
        raw = await self.api.api("GET", f"/_matrix/client/v3/rooms/{_path(room_id)}/event/{_path(event_id)}")
        return megolm.in_clear(self._state, room_id, raw)

    def power_of(self, room_id: str, user: str) -> float:
        """The user's power level in a room the bot follows (0 when the room is unknown)."""
        room = self._rooms.get(room_id)
        return room.powers.of(user) if room is not None else 0.0

    async def _to_device(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        content = event.get("content", {})
        sender = event.get("sender")
        if kind == "m.room.encrypted" and content.get("algorithm") == OLM and isinstance(sender, str):
            assert self._state is not None
            opened = olm.decrypt(self._state, sender, content)
            if opened is not None and opened.get("type") == "m.room_key":
                megolm.keep_room_key(self._state, self.api.user_id, sender, content.get("sender_key"), opened)
        elif kind == "m.room_key_request" and content.get("action") == "request" and isinstance(sender, str):
            await self._answer_key_request(sender, content)

    async def _answer_key_request(self, sender: str, content: dict[str, Any]) -> None:
        """Another device asks for a room key: given to it when its owner was sent that key (a member
        when those messages were sent) and it passes the key-sharing setting."""
        state = self._state
        assert state is not None
        body = content.get("body", {})
        session_id = body.get("session_id")
        device_id = content.get("requesting_device_id")
        room_key = state.room_keys.get(session_id) if isinstance(session_id, str) else None
        if room_key is None or not isinstance(device_id, str):
            return
        if sender not in room_key.users:
            log.info(
                "refused a room key request: its user was not a member when the key was in use",
                extra={"user": sender, "device": device_id, "room": room_key.room_id},
            )
            return
        self._outdated.add(sender)
        await self._query_devices([sender])
        device = state.devices.get(sender, {}).get(device_id)
        if device is None or not receives_keys(device, self.sharing, self.allowlist):
            log.info("refused a room key request from a device the key-sharing setting excludes",
                     extra={"user": sender, "device": device_id})  # fmt: skip
            return
        await self._send_room_key(room_key.room_id, session_id, [device], why="request")
