"""The independent E2EE reader from Python: one Matrix device run by matrix-js-sdk with its Rust
crypto (what Element Web runs), in a Node process (tests/e2ee_reader/reader.mjs) driven by JSON
lines. Tests use it to show that what the bots encrypt, Element's crypto decrypts.

Each `Reader` is one process and one device (its crypto store is in memory: every login is a new
device). Its stderr (the SDK's and the crypto's logs) goes to a file whose tail every error
carries. `scripts/ensure-e2ee-reader.sh` installs its packages (`make test` runs it; `install()`
runs it too, so a test run by hand works)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "e2ee_reader" / "reader.mjs"
INSTALL = ROOT / "scripts" / "ensure-e2ee-reader.sh"
LOG_TAIL = 4000  # characters of the reader's log an error carries
# Answers to `events` can hold a whole room: far above asyncio's 64 KiB line limit.
LINE_LIMIT = 64 * 1024 * 1024
DEFAULT_TIMEOUT = 90.0  # seconds: a loaded 2-core machine runs Synapse, the bots and Node at once
MARGIN = 30.0  # seconds the Python side waits beyond a command's own timeout


class ReaderError(Exception):
    """A command failed or timed out; the message ends with the tail of the reader's log."""


def install() -> None:
    """Make sure the reader's Node packages are installed (quick when they are)."""
    if shutil.which("node") is None:
        raise ReaderError(
            "node is not on PATH: the E2EE tests need Node.js 20+ and npm (apt-get install nodejs npm)"
        )
    done = subprocess.run([str(INSTALL)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ReaderError(f"{INSTALL.name} failed ({done.returncode}):\n{done.stdout}{done.stderr}")


@dataclass(frozen=True)
class Login:
    user_id: str
    device_id: str
    ed25519: str
    curve25519: str


@dataclass(frozen=True)
class Shield:
    """What Element shows beside a decrypted event: colour NONE, GREY or RED, and why (an
    `EventShieldReason` name such as UNSIGNED_DEVICE, or None)."""

    colour: str
    reason: str | None


@dataclass(frozen=True)
class Event:
    """One timeline event as the reader's device sees it.

    `type` and `content` are the clear ones (for an encrypted event that decrypted; `content` is
    None when it did not); `wire_type` is what the server holds (m.room.encrypted when encrypted).
    `failure` is js-sdk's `DecryptionFailureCode` (e.g. MEGOLM_UNKNOWN_INBOUND_SESSION_ID,
    UNSIGNED_SENDER_DEVICE, HISTORICAL_MESSAGE_USER_NOT_JOINED), DECRYPTION_PENDING if still being
    decrypted when the answer was made, or None."""

    event_id: str
    sender: str
    sender_device: str | None
    wire_type: str
    type: str
    state_key: str | None
    content: dict[str, Any] | None
    encrypted: bool
    decrypted: bool
    failure: str | None
    relates_to: dict[str, Any] | None
    origin_server_ts: int
    shield: Shield | None

    @property
    def body(self) -> str | None:
        return None if self.content is None else self.content.get("body")

    @property
    def is_state(self) -> bool:
        return self.state_key is not None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Event:
        shield = data.pop("shield")
        return cls(**data, shield=None if shield is None else Shield(**shield))


@dataclass(frozen=True)
class RoomView:
    """A room's whole timeline (paginated back to its start) from the reader's device."""

    room_id: str
    membership: str  # the reader's own: join, leave, invite...
    events: list[Event]

    @property
    def messages(self) -> list[Event]:
        """The message-like (non-state) events, whatever their decryption."""
        return [event for event in self.events if not event.is_state]

    @property
    def failures(self) -> list[Event]:
        return [event for event in self.events if event.encrypted and not event.decrypted]

    def bodies(self) -> list[str]:
        """The bodies of the messages that can be read, oldest first."""
        return [event.body for event in self.messages if event.body is not None and event.failure is None]


@dataclass(frozen=True)
class DeviceStatus:
    """js-sdk's `DeviceVerificationStatus` of a device, or known=False when the reader has no keys
    for it. signed_by_owner: signed by its owner's (verified) self-signing key, what MSC4153 asks."""

    known: bool
    signed_by_owner: bool
    cross_signing_verified: bool
    local_verified: bool
    verified: bool

    @classmethod
    def parse(cls, data: dict[str, Any]) -> DeviceStatus:
        return cls(
            known=data["known"],
            signed_by_owner=data["signedByOwner"],
            cross_signing_verified=data["crossSigningVerified"],
            local_verified=data["localVerified"],
            verified=data["verified"],
        )


_CAMEL = {
    "known": "known",
    "signed_by_owner": "signedByOwner",
    "cross_signing_verified": "crossSigningVerified",
    "local_verified": "localVerified",
    "verified": "verified",
}


@dataclass(frozen=True)
class Device:
    device_id: str
    display_name: str | None
    ed25519: str | None
    curve25519: str | None
    status: DeviceStatus


class Reader:
    """One reader process. Start with `await Reader.start(log)`, then `login`; `close()` ends it."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.login_info: Login | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._pump = asyncio.create_task(self._read_answers())

    @classmethod
    async def start(cls, log: Path) -> Reader:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                "node", str(SCRIPT),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                cwd=SCRIPT.parent, limit=LINE_LIMIT, env={**os.environ, "NODE_NO_WARNINGS": "1"},
            )  # fmt: skip
        return cls(process, log)

    @property
    def user_id(self) -> str:
        return self._logged_in().user_id

    @property
    def device_id(self) -> str:
        return self._logged_in().device_id

    def _logged_in(self) -> Login:
        if self.login_info is None:
            raise ReaderError("not logged in")
        return self.login_info

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL:]
        except FileNotFoundError:
            return "(no log)"

    async def _read_answers(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            answer = json.loads(line)
            future = self._waiting.pop(answer.get("id"), None)
            if future is not None and not future.done():
                future.set_result(answer)
        code = await self.process.wait()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ReaderError(f"the reader exited ({code})"))
        self._waiting.clear()

    async def call(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        """One command; its `result`. Raises ReaderError (with the log's tail) on failure."""
        if self.process.returncode is not None or self.process.stdin is None:
            raise ReaderError(f"{cmd}: the reader has exited ({self.process.returncode})\n{self.log_tail()}")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            self.process.stdin.write(json.dumps({"id": request_id, "cmd": cmd, **args}).encode() + b"\n")
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._waiting.pop(request_id, None)
            raise ReaderError(f"{cmd}: the reader has exited\n{self.log_tail()}") from None
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            self._waiting.pop(request_id, None)
            raise ReaderError(f"{cmd}: no answer within {timeout:.0f} s\n{self.log_tail()}") from None
        except ReaderError as error:
            raise ReaderError(f"{cmd}: {error}\n{self.log_tail()}") from None
        if not answer["ok"]:
            raise ReaderError(f"{answer['error']}\n--- reader log tail ---\n{self.log_tail()}")
        return answer["result"]

    async def _call_within(self, cmd: str, timeout: float, **args: Any) -> Any:
        """A command that takes its own `timeout_ms`: the Python side waits a margin longer."""
        return await self.call(cmd, timeout + MARGIN, timeout_ms=int(timeout * 1000), **args)

    # -- the commands ----------------------------------------------------------------------------

    async def login(
        self, homeserver: str, user: str, password: str, *, device_id: str | None = None,
        display_name: str | None = None, room_key_requests: bool = False, timeout: float = DEFAULT_TIMEOUT,
    ) -> Login:  # fmt: skip
        """Password login, Rust crypto, first sync; returns once the device's keys are on the server.
        `room_key_requests` turns on the crypto's room key requests, which js-sdk (so Element Web)
        turns off: only to find out what they would do."""
        args: dict[str, Any] = {"homeserver": homeserver, "user": user, "password": password,
                                "room_key_requests": room_key_requests}  # fmt: skip
        if device_id is not None:
            args["device_id"] = device_id
        if display_name is not None:
            args["display_name"] = display_name
        self.login_info = Login(**await self._call_within("login", timeout, **args))
        return self.login_info

    async def isolation(self, mode: Literal["all", "signed"]) -> None:
        """`all`: AllDevicesIsolationMode (the default); `signed`: OnlySignedDevicesIsolationMode
        (MSC4153: no keys to, no messages from, devices not cross-signed by their owner)."""
        await self.call("isolation", mode=mode)

    async def create_room(
        self, *, encrypted: bool = True, invite: list[str] | tuple[str, ...] = (), name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> str:  # fmt: skip
        """A private room (m.megolm.v1.aes-sha2 from its creation when `encrypted`); its id, once synced."""
        result = await self._call_within(
            "create_room", timeout, encrypted=encrypted, invite=list(invite), name=name
        )
        return str(result["room_id"])

    async def join(self, room: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Joins (by id or alias) and returns the room id once the room's state is synced."""
        return str((await self._call_within("join", timeout, room=room))["room_id"])

    async def leave(self, room: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self._call_within("leave", timeout, room=room)

    async def send(self, room: str, body: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """An m.text message (encrypted when the room is); its event id."""
        return str((await self._call_within("send", timeout, room=room, body=body))["event_id"])

    async def react(self, room: str, event_id: str, key: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        """A reaction (encrypted in an encrypted room, as Element sends it); its event id."""
        return str(
            (await self._call_within("react", timeout, room=room, event_id=event_id, key=key))["event_id"]
        )

    async def reply(
        self, room: str, event_id: str, body: str, *, thread: bool = False, timeout: float = DEFAULT_TIMEOUT
    ) -> str:
        """A rich reply to `event_id` (with `thread`, a message in its thread); its event id."""
        args = {"room": room, "event_id": event_id, "body": body, "thread": thread}
        return str((await self._call_within("reply", timeout, **args))["event_id"])

    async def redact(self, room: str, event_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
        return str((await self._call_within("redact", timeout, room=room, event_id=event_id))["event_id"])

    async def events(
        self, room: str, *, wait_for: int = 0, settled: bool = False, timeout: float = 60.0
    ) -> RoomView:
        """Every timeline event of the room, decrypted where this device can. With `wait_for`, first
        waits (up to `timeout`) until at least that many message-like events are readable (in the
        clear or decrypted; failed decryptions are retried meanwhile); on timeout it answers
        anyway, failures included, so a test asserts on what it got. With `settled`, it counts
        events whose decryption is over either way instead: for asserting a failure no late key
        will heal (UNSIGNED_SENDER_DEVICE) without waiting out the timeout."""
        args = {"room": room, "wait_for": wait_for, "settled": settled}
        return _room_view(await self._call_within("events", timeout, **args))

    async def device_status(
        self, user: str, device: str, *, wait: float = 0.0, expect: dict[str, bool] | None = None
    ) -> DeviceStatus:
        """How this reader trusts a device. With `wait`, first waits up to that long for the
        device's keys to be known (ReaderError if they never are) and, with `expect` (DeviceStatus
        field names, e.g. {"signed_by_owner": True}), for those fields to hold; on timeout it
        answers the status it has, for the test to assert on."""
        args: dict[str, Any] = {"user": user, "device": device, "wait_ms": int(wait * 1000)}
        if expect:
            args["expect"] = {_CAMEL[name]: value for name, value in expect.items()}
        return DeviceStatus.parse(await self.call("device_status", wait + MARGIN + DEFAULT_TIMEOUT, **args))

    async def devices(self, user: str) -> list[Device]:
        return [
            Device(d["device_id"], d["display_name"], d["ed25519"], d["curve25519"], DeviceStatus.parse(d))
            for d in await self.call("devices", user=user)
        ]

    async def bootstrap_cross_signing(self) -> dict[str, Any]:
        """Cross-signing keys for the reader's user (new ones unless this device holds them: on a
        second device of a user that has some, this *replaces* them, authorised with the login
        password), this device signed. Returns {ready, master_key, private_keys_cached:
        {masterKey, selfSigningKey, userSigningKey}, device: DeviceStatus fields}."""
        result: dict[str, Any] = await self.call("bootstrap_cross_signing")
        return result

    async def export_secrets(self) -> dict[str, Any]:
        """This device's cross-signing secrets bundle (for `import_secrets` on another device)."""
        return dict((await self.call("export_secrets"))["bundle"])

    async def import_secrets(self, bundle: dict[str, Any]) -> DeviceStatus:
        """Takes a bundle from another device of the same user and signs this device with it."""
        return DeviceStatus.parse((await self.call("import_secrets", bundle=bundle))["device"])

    async def forward_room_keys(self, room: str, user: str, device: str) -> list[str]:
        """Sends the room's Megolm sessions this device holds to one device as unrequested
        m.forwarded_room_key (Olm-encrypted); the session ids sent."""
        return list(
            (await self.call("forward_room_keys", room=room, user=user, device=device))["session_ids"]
        )

    async def traffic(self) -> dict[str, list[dict[str, Any]]]:
        """To-device traffic so far: `sent` [{type, to: {user: [devices]}, status, plain}] (plain:
        the contents when not Olm-encrypted), `synced` [{type, sender, sender_key}] as the server
        delivered them, `received` [{type, sender, wire_type, room_id, session_id, content_keys}]
        after decryption; and `paged` [{dir, from}], the /messages requests (from: a token given)."""
        result: dict[str, list[dict[str, Any]]] = await self.call("traffic")
        return result

    async def close(self) -> None:
        """Stops the client and the process (killed if it does not exit within 10 s)."""
        if self.process.returncode is None:
            with contextlib.suppress(ReaderError):
                await self.call("stop", timeout=10)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self._pump


def _room_view(result: dict[str, Any]) -> RoomView:
    return RoomView(result["room_id"], result["membership"], [Event.parse(e) for e in result["events"]])
