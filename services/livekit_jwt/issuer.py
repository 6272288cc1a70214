"""livekit-jwt as a kit component: its credentials, the OpenID check against the user's homeserver
(over the SSRF-safe egress), the SFU's RoomService, and who gets full access."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from livekit import api

from matrix_stack.core import egress, federation
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.metrics import LivekitMetrics

log = logging.getLogger("matrix_stack.livekit_jwt")


class NotAuthorised(Exception):
    """The OpenID token did not check out; the message says why (never the token)."""


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


class Issuer:
    def __init__(self, settings: LivekitJwtSettings, metrics: LivekitMetrics | None = None) -> None:
        self._settings = settings
        self._metrics = metrics or LivekitMetrics()
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
        self.full_access = set(settings.full_access_homeservers)
        self._rooms: api.LiveKitAPI | None = None
        self._started = False

    @property
    def settings(self) -> LivekitJwtSettings:
        return self._settings

    @property
    def metrics(self) -> LivekitMetrics:
        return self._metrics

    async def start(self) -> None:
        # livekit-api's client opens an aiohttp session: made inside the running loop, closed in stop
        self._rooms = api.LiveKitAPI(api_url(self.settings), self.credentials.key, self.credentials.secret)
        self._started = True

    async def stop(self) -> None:
        self._started = False
        if self._rooms is not None:
            await self._rooms.aclose()
            self._rooms = None

    async def ready(self) -> bool:
        return self._started

    def readiness(self) -> dict[str, Any]:
        return {}

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
                cache=self.well_known, overrides=self.overrides,
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
        request = api.CreateRoomRequest(
            name=name,
            empty_timeout=settings.room_empty_timeout,
            departure_timeout=settings.room_departure_timeout,
        )
        try:
            await self._rooms.room.create_room(request)
        except Exception:
            self.metrics.rooms.labels("failed").inc()
            raise
        self.metrics.rooms.labels("ok").inc()
