"""The Matrix side of a service: one client, one outbox and their background tasks.

The kit's app owns its lifecycle: the app's lifespan calls `start` before serving HTTP and `stop`
after; route builders get the service, started by the time a request arrives.

The Matrix side is whatever `Client` the factory makes: `MatrixClient` on the homeserver the settings
name, or, for an app driven in-process, a stand-in that records what would be sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from matrix_stack.shared.bridge.metrics import Metrics
from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit.errors import StartupError
from matrix_stack.shared.matrix.client import MatrixClient
from matrix_stack.shared.matrix.crypto.machine import Crypto
from matrix_stack.shared.matrix.crypto.secret import derive, local_secret
from matrix_stack.shared.matrix.sessions import FileSession, SessionStore
from matrix_stack.shared.outbox.engine import Outbox, Sender
from matrix_stack.shared.outbox.sqlite import SqliteStore
from matrix_stack.shared.outbox.store import OutboxStore

READY_CACHE_SECONDS = 2.0  # probes stay cheap however often they come


class Client(Sender, Protocol):
    """What the service drives of its Matrix side: the outbox's sender, started and closed with the
    service, asked for readiness, and answering invites when it has an allow-list."""

    @property
    def invite_allowlist(self) -> Sequence[str]: ...

    async def start(self) -> None:
        """Raises errors.StartupError."""

    async def close(self) -> None: ...

    async def reachable(self) -> bool: ...

    async def run_invite_loop(self) -> None:
        """Until cancelled."""


# (settings, the session store beside the outbox) -> the client
ClientFactory = Callable[[ServiceSettings, SessionStore], Client]


def matrix_client(settings: ServiceSettings, session: SessionStore) -> MatrixClient:
    """The bot on the homeserver the settings name; a password login is kept in `session`."""
    return MatrixClient(
        settings.homeserver,
        settings.user_id,
        access_token=settings.access_token.get_secret_value() if settings.access_token else None,
        password=settings.password.get_secret_value() if settings.password else None,
        session=session,
        device_name=settings.device_name,
        invite_allowlist=settings.invite_allowlist,
    )


@dataclass
class Service:
    settings: ServiceSettings
    client: Client
    outbox: Outbox
    metrics: Metrics
    crypto: Crypto | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _started: bool = False
    _ready_cache: tuple[float, bool] = (0.0, False)

    @classmethod
    def from_settings(
        cls,
        settings: ServiceSettings,
        metrics: Metrics | None = None,
        *,
        client: ClientFactory = matrix_client,
    ) -> Service:
        """The outbox the settings name (SQLite or PostgreSQL) and the client `client` makes."""
        metrics = metrics or Metrics()
        store: OutboxStore
        session: SessionStore
        if settings.outbox_url is not None:
            # Imported here: psycopg costs a SQLite-only bridge about 10 MiB of its idle memory.
            from matrix_stack.shared.outbox.postgres import PostgresStore

            shared = PostgresStore(
                settings.outbox_url.get_secret_value(),
                settings.outbox_schema_name,
                owner=settings.user_id,
                lease_seconds=settings.outbox_lease_seconds,
                pool_size=settings.outbox_pool_size,
            )
            store, session = shared, shared.session_store()
        else:
            store, session = SqliteStore(settings.outbox_file), FileSession(settings.session_file)
        matrix = client(settings, session)
        outbox = Outbox(
            store,
            matrix,
            metrics.outbox,
            max_backoff=settings.backoff_max_seconds,
            retention=settings.outbox_retention_seconds,
            root_retention=settings.relation_retention_seconds,
            survey_seconds=settings.outbox_lease_seconds / 3,
        )
        crypto: Crypto | None = None
        if isinstance(matrix, MatrixClient):  # not a stand-in: the real homeserver, so real rooms
            crypto = _crypto(settings, matrix, metrics)
            matrix.crypto = crypto
            if settings.encryption:
                outbox.device = crypto
        return cls(settings, matrix, outbox, metrics, crypto)

    async def start(self) -> None:
        """Open the outbox, check the credentials and start delivering. Raises StartupError."""
        if self._started:
            return
        # The outbox first: on PostgreSQL it also holds the bot's shared login.
        try:
            await self.outbox.open()
        except Exception as exc:
            raise StartupError(f"cannot open the outbox at {self.outbox.description}: {exc}") from exc
        try:
            await self.client.start()
        except Exception as exc:
            await self.client.close()
            await self.outbox.store.close()
            if isinstance(exc, StartupError):
                raise
            raise StartupError(f"cannot start: {exc}") from exc
        self.outbox.start()
        # With encryption, the replica holding the device follows the rooms and answers invites.
        if self.client.invite_allowlist and self.outbox.device is None:
            self._tasks.append(asyncio.create_task(self.client.run_invite_loop(), name="invites"))
        self._started = True

    async def stop(self) -> None:
        """Stop background work, let in-flight sends finish, close everything."""
        if not self._started:
            return
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.outbox.stop(self.settings.shutdown_drain_seconds)
        await self.client.close()

    async def ready(self) -> bool:
        """Homeserver reachable and outbox writable."""
        checked_at, answer = self._ready_cache
        if time.monotonic() - checked_at < READY_CACHE_SECONDS:
            return answer
        answer = self._started and await self.client.reachable() and await self.outbox.writable()
        self._ready_cache = (time.monotonic(), answer)
        return answer

    def readiness(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "outbox_depth": self.outbox.depth,
            "outbox_backend": self.outbox.store.backend,
        }
        if self.crypto is not None:
            answer["encryption"] = (
                "off" if not self.crypto.enabled else "ready" if self.crypto.ready else "standby"
            )
        return answer

    def secrets(self) -> list[str]:
        return self.settings.secrets()


def _crypto(settings: ServiceSettings, matrix: MatrixClient, metrics: Metrics) -> Crypto:
    keys = None
    if settings.encryption:
        secret = (
            settings.encryption_key.get_secret_value().encode()
            if settings.encryption_key is not None
            else local_secret(settings.encryption_key_file)
        )
        keys = derive(secret, settings.user_id)
    return Crypto(
        matrix,
        keys,
        enabled=settings.encryption,
        sharing=settings.key_sharing,
        allowlist=settings.key_sharing_allowlist,
        metrics=metrics.crypto,
        on_invite=matrix.answer_invite if settings.invite_allowlist else None,
    )
