"""The Matrix client layer: authentication, room resolution, joins, invites and sends over matrix-nio."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import nio

from matrix_stack.shared.kit.errors import StartupError
from matrix_stack.shared.matrix.crypto.machine import Crypto
from matrix_stack.shared.matrix.discovery import DiscoveryError, discover_homeserver
from matrix_stack.shared.matrix.errors import HomeserverUnavailable, MatrixError
from matrix_stack.shared.matrix.sessions import FileSession, SessionStore

log = logging.getLogger(__name__)


def _error(response: nio.ErrorResponse) -> MatrixError:
    transport = response.transport_response
    status = transport.status if transport is not None else None
    return MatrixError(response.status_code, response.message, status, response.retry_after_ms)


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def invite_allowed(inviter: str, allowlist: Iterable[str]) -> bool:
    """An allow-list entry is a user id (`@bot-admin:example.org`) or a server name (`example.org`)."""
    server = _server_of(inviter)
    return any(entry == inviter or entry.lstrip(":") == server for entry in allowlist)


class MatrixClient:
    """One bot account on one homeserver.

    Authenticates with an access token, or with a password once: the token it gets is kept in the
    session store and reused, so restarts and replicas keep the same device (transaction ids are per
    device).
    """

    def __init__(
        self,
        homeserver: str,
        user_id: str,
        *,
        access_token: str | None = None,
        password: str | None = None,
        session_file: Path | None = None,
        session: SessionStore | None = None,
        device_name: str = "matrix-stack",
        invite_allowlist: Iterable[str] = (),
        request_timeout: float = 30.0,
    ) -> None:
        if not access_token and not password:
            raise ValueError("an access token or a password is needed")
        self.homeserver = homeserver.rstrip("/")
        self.user_id = user_id
        self._access_token = access_token
        self._password = password
        self._session = session or (FileSession(session_file) if session_file is not None else None)
        self._device_name = device_name
        self.invite_allowlist = tuple(invite_allowlist)
        # Retries are the outbox's job: nio must hand every 429 and connection error straight back.
        config = nio.AsyncClientConfig(
            max_limit_exceeded=0, max_timeouts=0, request_timeout=request_timeout, encryption_enabled=False
        )  # encryption is ours (crypto/), not nio's
        self.nio = nio.AsyncClient(self.homeserver, user_id, config=config)
        self._aliases: dict[str, str] = {}
        self._joined: set[str] = set()
        self._join_locks: dict[str, asyncio.Lock] = {}
        # Set by the bridge: encrypts for encrypted rooms (and refuses to send there in the clear).
        self.crypto: Crypto | None = None

    # -- start-up ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Authenticate and learn the joined rooms; raise StartupError with one clear line if that fails."""
        try:
            if "://" not in self.homeserver:
                await self._discover()
            if self._access_token:
                self._use_token(self._access_token, None)
                await self._check_token()
            elif not await self._resume_session():
                await self._login_once()
            self._joined = set(await self._joined_rooms())
        except HomeserverUnavailable as exc:
            raise StartupError(f"homeserver {self.homeserver} is unreachable: {exc}") from exc
        except MatrixError as exc:
            raise StartupError(f"homeserver {self.homeserver} refused {self.user_id}: {exc}") from exc

    async def _discover(self) -> None:
        """A server name instead of a URL: find the client API through its well-known document."""
        server_name = self.homeserver
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                self.homeserver = await discover_homeserver(server_name, http=http)
        except DiscoveryError as exc:
            raise StartupError(f"cannot find the homeserver of {server_name}: {exc}") from exc
        self.nio.homeserver = self.homeserver

    def _use_token(self, token: str, device_id: str | None) -> None:
        self.nio.access_token = token
        self.nio.user_id = self.user_id
        if device_id:
            self.nio.device_id = device_id

    async def _check_token(self) -> None:
        response = await self._call(self.nio.whoami())
        if not isinstance(response, nio.WhoamiResponse):
            raise _error(response)
        if response.user_id != self.user_id:
            raise StartupError(f"the access token belongs to {response.user_id}, not {self.user_id}")
        if response.device_id:
            self.nio.device_id = response.device_id

    async def _resume_session(self) -> bool:
        if self._session is None:
            return False
        saved = await self._session.load()
        if (
            saved is None
            or saved.get("user_id") != self.user_id
            or saved.get("homeserver") != self.homeserver
        ):
            return False
        self._use_token(saved["access_token"], saved.get("device_id"))
        try:
            await self._check_token()
        except MatrixError as exc:
            if exc.errcode == "M_UNKNOWN_TOKEN":
                return False
            raise
        return True

    async def _login_once(self) -> None:
        if self._session is None:
            await self._login()
            return
        async with self._session.exclusive():
            if not await self._resume_session():  # another replica may have logged in meanwhile
                await self._login()

    async def _login(self) -> None:
        assert self._password is not None
        response = await self._call(self.nio.login(self._password, device_name=self._device_name))
        if not isinstance(response, nio.LoginResponse):
            raise _error(response)
        if self._session is not None:
            await self._session.save(
                {
                    "homeserver": self.homeserver,
                    "user_id": self.user_id,
                    "device_id": response.device_id,
                    "access_token": response.access_token,
                }
            )

    async def close(self) -> None:
        await self.nio.close()

    # -- calls ------------------------------------------------------------------------------------

    async def _call(self, request: Any) -> Any:
        try:
            return await request
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise HomeserverUnavailable(str(exc) or type(exc).__name__) from exc

    @property
    def device_id(self) -> str:
        return str(self.nio.device_id or "")

    async def api(
        self, method: str, path: str, body: dict[str, Any] | None = None, *,
        query: dict[str, str] | None = None, timeout: float = 30.0,
    ) -> dict[str, Any]:  # fmt: skip
        """One client-server API call on the client's connections; the answer's JSON object."""
        session = self.nio.client_session
        if session is None:
            raise HomeserverUnavailable("the client is not started")
        headers = {"Authorization": f"Bearer {self.nio.access_token}"}
        try:
            async with session.request(
                method, self.homeserver + path, json=body, params=query, headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as http:  # fmt: skip
                status = http.status
                answer = await http.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise HomeserverUnavailable(str(exc) or type(exc).__name__) from exc
        if not isinstance(answer, dict):
            answer = {"state": answer} if isinstance(answer, list) else {}
        if status >= 400:
            retry = answer.get("retry_after_ms")
            raise MatrixError(
                answer.get("errcode"),
                str(answer.get("error", "")),
                status,
                retry if isinstance(retry, int) else None,
            )
        return answer

    async def reachable(self) -> bool:
        """Whether the homeserver answers the client API at all (for readiness)."""
        session = self.nio.client_session
        if session is None:
            return False
        try:
            async with session.get(
                f"{self.homeserver}/_matrix/client/versions", timeout=aiohttp.ClientTimeout(total=5)
            ) as http:
                return bool(http.status == 200)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def _joined_rooms(self) -> list[str]:
        response = await self._call(self.nio.joined_rooms())
        if not isinstance(response, nio.JoinedRoomsResponse):
            raise _error(response)
        return list(response.rooms)

    async def resolve(self, room: str) -> str:
        """A room id for a room id or alias; aliases are resolved once and cached."""
        if not room.startswith("#"):
            return room
        cached = self._aliases.get(room)
        if cached:
            return cached
        response = await self._call(self.nio.room_resolve_alias(room))
        if not isinstance(response, nio.RoomResolveAliasResponse):
            raise _error(response)
        self._aliases[room] = response.room_id
        return str(response.room_id)

    async def join(self, room: str) -> str:
        """Join a room by id or alias and return its id."""
        response = await self._call(self.nio.join(room))
        if not isinstance(response, nio.JoinResponse):
            raise _error(response)
        self._joined.add(response.room_id)
        return str(response.room_id)

    async def ensure_joined(self, room_id: str) -> None:
        """Join once; concurrent senders to the same room wait for the one join."""
        if room_id in self._joined:
            return
        lock = self._join_locks.setdefault(room_id, asyncio.Lock())
        async with lock:
            if room_id not in self._joined:
                await self.join(room_id)

    async def send(
        self, room: str, content: dict[str, Any], *, txn_id: str, event_type: str = "m.room.message"
    ) -> str:
        """Send one event and return its id. The same `txn_id` never posts twice.

        Joins when the bot is not in the room yet, and once more when the homeserver says it is not.
        """
        room_id = await self.resolve(room)
        await self.ensure_joined(room_id)
        try:
            return await self._put(room_id, event_type, content, txn_id)
        except MatrixError as exc:
            if exc.errcode != "M_FORBIDDEN":
                raise
            self._joined.discard(room_id)
            await self.join(room_id)
            return await self._put(room_id, event_type, content, txn_id)

    async def _put(self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str) -> str:
        if self.crypto is not None:  # encrypted when the room is; CannotEncrypt keeps it queued
            event_type, content = await self.crypto.prepare(room_id, event_type, content)
        response = await self._call(self.nio.room_send(room_id, event_type, content, tx_id=txn_id))
        if not isinstance(response, nio.RoomSendResponse):
            raise _error(response)
        return str(response.event_id)

    # -- invites ----------------------------------------------------------------------------------

    async def handle_invites(self, invites: dict[str, nio.InviteInfo]) -> None:
        for room_id, info in invites.items():
            inviter = next(
                (
                    event.sender
                    for event in info.invite_state
                    if isinstance(event, nio.InviteMemberEvent) and event.state_key == self.user_id
                ),
                None,
            )
            await self.answer_invite(room_id, inviter)

    async def answer_invite(self, room_id: str, inviter: str | None) -> None:
        """Join when the inviter is on the allow-list, else decline."""
        if inviter is not None and invite_allowed(inviter, self.invite_allowlist):
            log.info("accepting invite", extra={"room_id": room_id, "inviter": inviter})
            try:
                await self.join(room_id)
            except MatrixError as exc:
                log.warning("could not accept invite", extra={"room_id": room_id, "error": str(exc)})
        else:
            log.info("refusing invite", extra={"room_id": room_id, "inviter": inviter})
            await self._call(self.nio.room_leave(room_id))

    async def run_invite_loop(self, *, poll_timeout_ms: int = 30000) -> None:
        """Long-poll /sync for invites only and answer them; runs until cancelled."""
        sync_filter = {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "timeline": {"limit": 0},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
        since: str | None = None
        delay = 1.0
        while True:
            try:
                response = await self._call(
                    self.nio.sync(timeout=poll_timeout_ms, sync_filter=sync_filter, since=since)
                )
                if isinstance(response, nio.SyncResponse):
                    since = response.next_batch
                    delay = 1.0
                    if response.rooms.invite:
                        await self.handle_invites(response.rooms.invite)
                    continue
                log.warning("invite sync failed", extra={"error": str(response)})
            except (HomeserverUnavailable, MatrixError) as exc:
                log.warning("invite sync failed", extra={"error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)
