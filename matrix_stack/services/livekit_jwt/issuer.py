"""livekit-jwt as a kit component: its credentials, the OpenID check against the user's homeserver
(over the SSRF-safe egress), the SFU's RoomService, and who gets full access."""

from __future__ import annotations

import logging
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from google.protobuf import json_format
from livekit.protocol.webhook import WebhookEvent

from matrix_stack.services.livekit_jwt import egress, federation, tokens
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.connections import Connections, tls_context
from matrix_stack.services.livekit_jwt.delegation import Delegations
from matrix_stack.services.livekit_jwt.metrics import LivekitMetrics
from matrix_stack.services.livekit_jwt.sfu import RoomService, TwirpError
from matrix_stack.services.livekit_jwt.store import JobStore, StoreError
from matrix_stack.shared.kit.errors import NotDurable, StartupError

log = logging.getLogger("matrix_stack.livekit_jwt")
CALL_TIMEOUT = 5.0  # one delayed-event call, all told


class NotAuthorised(Exception):
    """The OpenID token did not check out; the message says why (never the token)."""


class NoClientApi(Exception):
    """The homeserver's client-server API could not be found."""


class BadWebhook(Exception):
    """A webhook that LiveKit did not sign."""


def cs_api_overrides(entries: list[str]) -> dict[str, str]:
    overrides = {}
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or not url.strip().startswith(("https://", "http://")) or not name.strip():
            raise ValueError(f"LIVEKIT_JWT_CS_API_OVERRIDES: {entry!r} is not server_name=https://base-url")
        overrides[name.strip().lower()] = url.strip().rstrip("/")
    return overrides


@dataclass(frozen=True)
class Credentials:
    key: str
    secret: str


def credentials(settings: LivekitJwtSettings) -> Credentials:
    """The API key and secret, from the settings or a LiveKit keys file (`key: secret`)."""
    if settings.keys_file is not None:
        try:
            text = settings.keys_file.read_text()
        except OSError as exc:
            raise ValueError(
                f"LIVEKIT_JWT_KEYS_FILE: cannot read {settings.keys_file}: {exc.strerror}"
            ) from exc
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        parts = lines[0].split(":") if len(lines) == 1 else []
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"LIVEKIT_JWT_KEYS_FILE: {settings.keys_file} must hold one line `key: secret`")
        return Credentials(parts[0].strip(), parts[1].strip())
    assert settings.key is not None
    assert settings.secret is not None
    return Credentials(settings.key.get_secret_value(), settings.secret.get_secret_value())


def api_url(settings: LivekitJwtSettings) -> str:
    if settings.livekit_api_url:
        return settings.livekit_api_url.rstrip("/")
    url = settings.livekit_url.rstrip("/")
    return "http" + url.removeprefix("ws") if url.startswith("ws") else url


def job_store(settings: LivekitJwtSettings) -> JobStore:
    """PostgreSQL when configured (every replica), else the pod's own SQLite file."""
    holder = f"{settings.replica or socket.gethostname()}:{uuid.uuid4().hex[:8]}"  # a new name per start
    lease = settings.delegation_lease_seconds
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
        return JobStore.postgres(url, settings.database_schema, holder=holder, lease_seconds=lease)
    return JobStore.sqlite(settings.data_dir / "delegations.sqlite3", holder=holder, lease_seconds=lease)


class RoomServiceSfu:
    """The SFU's RoomService (the same credentials as room creation: they carry roomAdmin)."""

    def __init__(self, rooms: RoomService) -> None:
        self._rooms = rooms

    async def present(self, room: str, identity: str) -> bool | None:
        try:
            await self._rooms.get_participant(room, identity)
        except TwirpError as exc:
            if exc.code == "not_found":
                return False
            log.warning("participant lookup failed", extra={"reason": str(exc)})
            return None
        except Exception as exc:  # unreachable: not an answer either way
            log.warning("participant lookup failed", extra={"reason": str(exc)})
            return None
        return True

    async def participants(self, room: str) -> set[str] | None:
        try:
            answer = await self._rooms.list_participants(room)
        except TwirpError as exc:
            if exc.code == "not_found":  # the room is gone, and everyone with it
                return set()
            log.warning("participant list failed", extra={"reason": str(exc)})
            return None
        except Exception as exc:
            log.warning("participant list failed", extra={"reason": str(exc)})
            return None
        return {participant.identity for participant in answer.participants}


class Issuer:
    def __init__(self, settings: LivekitJwtSettings, metrics: LivekitMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or LivekitMetrics()
        for line in settings.aliases_used:
            log.info(line)
        self.credentials = credentials(settings)
        try:
            self.policy = egress.AddressPolicy(settings.federation_allow)
        except ValueError as exc:
            raise ValueError(f"LIVEKIT_JWT_FEDERATION_ALLOW: {exc}") from exc
        try:
            self.overrides = dict(federation.override(entry) for entry in settings.federation_overrides)
        except federation.InvalidServerName as exc:
            raise ValueError(f"LIVEKIT_JWT_FEDERATION_OVERRIDES: {exc}") from exc
        try:  # a malformed resolver address fails here, not at the first lookup
            if settings.dns_servers:
                egress.dns_resolver(tuple(settings.dns_servers))
        except ValueError as exc:
            raise ValueError(f"LIVEKIT_JWT_DNS_SERVERS: {exc}") from exc
        self.well_known = federation.WellKnownCache()
        self.connections = Connections()  # to homeservers, kept across lookups; closed in stop
        self.cs_api_overrides = cs_api_overrides(settings.cs_api_overrides)
        self.delegations: Delegations | None = None
        self._http: httpx.AsyncClient | None = None
        self.full_access = set(settings.full_access_homeservers)
        self._rooms: RoomService | None = None
        self._started = False

    @property
    def settings(self) -> LivekitJwtSettings:
        return self._settings

    @property
    def metrics(self) -> LivekitMetrics:
        return self._metrics

    async def start(self) -> None:
        settings = self.settings
        self._rooms = RoomService(api_url(settings), self.credentials.key, self.credentials.secret)
        if settings.delegation:
            # for the operator's own overrides only; discovered homeservers go through the egress policy
            self._http = httpx.AsyncClient(
                timeout=CALL_TIMEOUT, verify=tls_context(settings.federation_ca_file), trust_env=False
            )
            store = job_store(settings)
            self.delegations = Delegations(
                store, self._post, RoomServiceSfu(self._rooms), join_grace=settings.delegation_join_grace,
                sanity_interval=settings.sanity_check_interval_seconds, metrics=self.metrics,
            )  # fmt: skip
            try:
                await self.delegations.open()
            except (StoreError, NotDurable) as exc:
                self.delegations = None
                await self.stop()
                raise StartupError(f"delegation jobs: {exc}") from exc
            log.info("delegation jobs", extra={"store": store.description, "replica": store.holder})
            self.delegations.start()
        self._started = True

    async def stop(self) -> None:
        self._started = False
        if self.delegations is not None:
            await self.delegations.stop()
            self.delegations = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._rooms is not None:
            await self._rooms.aclose()
            self._rooms = None
        await self.connections.aclose()

    async def ready(self) -> bool:
        return self._started

    def readiness(self) -> dict[str, Any]:
        return {}

    def secrets(self) -> list[str]:
        return [*self.settings.secrets(), self.credentials.secret]  # it may come from a keys file

    def has_full_access(self, server_name: str) -> bool:
        return "*" in self.full_access or server_name in self.full_access

    async def user_id(self, server_name: str, access_token: str) -> str:
        """The user an OpenID token belongs to, asked of its homeserver; raises NotAuthorised."""
        settings = self.settings
        started = time.perf_counter()
        outcome = "ok"
        try:
            user_id: str = await federation.openid_userinfo(
                server_name, access_token, policy=self.policy, ca_file=settings.federation_ca_file,
                timeout=settings.federation_timeout, dns_servers=settings.dns_servers,
                cache=self.well_known, overrides=self.overrides, connections=self.connections,
            )  # fmt: skip
            return user_id
        except egress.EgressRefused as exc:
            outcome = "refused"
            self.metrics.refusals.labels(exc.kind).inc()
            raise NotAuthorised(f"refused: {exc}") from exc
        except (egress.EgressError, federation.FederationError) as exc:
            outcome = "failed"
            raise NotAuthorised(str(exc)) from exc
        finally:
            self.metrics.lookup_seconds.labels(outcome).observe(time.perf_counter() - started)

    async def create_room(self, name: str) -> None:
        """Idempotent on the SFU: an existing room is returned as it is."""
        assert self._rooms is not None
        settings = self.settings
        try:
            await self._rooms.create_room(
                name,
                empty_timeout=settings.room_empty_timeout,
                departure_timeout=settings.room_departure_timeout,
            )
        except TwirpError:
            self.metrics.rooms.labels("failed").inc()
            raise
        self.metrics.rooms.labels("ok").inc()

    async def client_api(self, server_name: str) -> str:
        """The homeserver's client-server API base: an override, else its `.well-known/matrix/client`
        fetched under the egress policy (https only; never a URL a request gives)."""
        if (fixed := self.cs_api_overrides.get(server_name.lower())) is not None:
            return fixed
        name = federation.parse_server_name(server_name)
        host = f"[{name.host}]" if name.ip is not None and name.ip.version == 6 else name.host
        settings = self.settings
        try:
            answer = await egress.https_get(
                f"https://{host}/.well-known/matrix/client", policy=self.policy, host_header=host,
                ca_file=settings.federation_ca_file, timeout=settings.federation_timeout,
                dns_servers=settings.dns_servers, connections=self.connections,
            )  # fmt: skip
            base = answer.json()["m.homeserver"]["base_url"] if answer.status == 200 else None
        except (egress.EgressError, ValueError, KeyError, TypeError) as exc:
            raise NoClientApi(f"{host}: {exc}") from exc
        try:
            url = httpx.URL(base) if isinstance(base, str) else None
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme != "https" or not url.host or url.query or url.fragment or url.userinfo:
            raise NoClientApi(
                f"{host}: no plain https m.homeserver.base_url in its .well-known/matrix/client"
            )
        return str(url).rstrip("/")

    async def _post(self, url: str) -> int | None:
        """A delayed-event call: to an override as configured, to a discovered homeserver under the
        egress policy (checked addresses, size and time limits) like every lookup a request causes."""
        settings = self.settings
        if any(url.startswith(base + "/") for base in self.cs_api_overrides.values()):
            assert self._http is not None
            try:
                return (await self._http.post(url, json={})).status_code
            except httpx.HTTPError:
                return None
        try:
            answer = await egress.https_request(
                "POST", url, policy=self.policy, json_body={}, max_bytes=16 * 1024, timeout=CALL_TIMEOUT,
                ca_file=settings.federation_ca_file, dns_servers=settings.dns_servers,
                connections=self.connections,
            )  # fmt: skip
        except egress.EgressError as exc:
            log.warning("delayed event call refused or failed", extra={"reason": str(exc)})
            return None
        return answer.status

    async def delegate(
        self, server_name: str, delay_id: str, timeout_ms: int, room: str, identity: str
    ) -> None:
        assert self.delegations is not None
        cs_api = await self.client_api(server_name)
        if self.delegations is None:  # stopping meanwhile
            raise NoClientApi("the service is stopping")
        try:
            await self.delegations.add(delay_id, cs_api, room, identity, timeout_ms)
        except StoreError as exc:
            raise NoClientApi(f"cannot keep the delegation: {exc}") from exc

    async def webhook(self, body: bytes, authorization: str) -> None:
        """A LiveKit webhook: participants joining and leaving drive the delegations."""
        key, secret = self.credentials.key, self.credentials.secret
        try:
            tokens.check_webhook(key, secret, body, authorization)
            event = json_format.Parse(body, WebhookEvent(), ignore_unknown_fields=True)
        except (tokens.BadSignature, json_format.ParseError, UnicodeDecodeError) as exc:
            raise BadWebhook(str(exc)) from None
        if self.delegations is None:
            return
        room = event.room.name
        identity = event.participant.identity if event.HasField("participant") else None
        if event.event == "participant_joined" and identity:
            await self.delegations.joined(room, identity)
        elif event.event in ("participant_left", "participant_connection_aborted") and identity:
            await self.delegations.left(room, identity)
        elif event.event == "room_finished":
            await self.delegations.left(room, None)
