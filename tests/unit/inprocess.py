"""A service's app driven in-process: built as `main_for` builds it, its lifespan started, requests
over ASGI; for a Matrix bridge, a real SQLite outbox whose sender records what would have been sent
instead of reaching a homeserver. Fast enough for the unit tier: no process, no port, no Synapse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from asgi_lifespan import LifespanManager
from starlette.routing import BaseRoute

from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit import responses
from matrix_stack.shared.kit.app import NotDurableResponse
from matrix_stack.shared.kit.component import Component
from matrix_stack.shared.kit.server import build_app
from matrix_stack.shared.kit.settings import KitSettings
from matrix_stack.shared.matrix.sessions import SessionStore

S = TypeVar("S", bound=KitSettings)
B = TypeVar("B", bound=ServiceSettings)
C = TypeVar("C", bound=Component)
DATA = Path(__file__).resolve().parent.parent / "data"  # payload samples, shared with the other tiers


def bot(data_dir: Path) -> dict[str, Any]:
    """A bridge's Matrix settings for a homeserver that is never asked (the recorder stands in)."""
    return {
        "homeserver": "https://homeserver.invalid",
        "user_id": "@bot:example.org",
        "access_token": "never-sent-anywhere",
        "data_dir": data_dir,
        "log_json": False,
    }


@dataclass(frozen=True)
class Sent:
    room: str
    content: dict[str, Any]
    txn_id: str
    event_type: str
    event_id: str


class RecordingClient:
    """A bridge's Matrix client without a homeserver: started, always reachable, no invites; every
    event the outbox sends is recorded and given the next event id ($event1, $event2...)."""

    invite_allowlist: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.started = False
        self.closed = False
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def reachable(self) -> bool:
        return True

    async def run_invite_loop(self) -> None:
        await asyncio.Event().wait()  # no allow-list: never started

    async def send(self, room: str, content: dict[str, Any], *, txn_id: str, event_type: str) -> str:
        event_id = f"$event{len(self.sent) + 1}"
        self.sent.append(Sent(room, content, txn_id, event_type, event_id))
        self._arrived.set()
        return event_id

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Sent]:
        """Everything sent, once at least `count` events are (the outbox sends in the background)."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return list(self.sent)


@asynccontextmanager
async def serving(
    settings: S,
    build: Callable[[S], C],
    routes: Callable[[S, C], Sequence[BaseRoute]],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
) -> AsyncIterator[tuple[C, httpx.AsyncClient]]:
    """The component, started by the app's lifespan, and a client for its app."""
    component, app = build_app(settings, build, routes, not_durable=not_durable)
    transport = httpx.ASGITransport(app=app)
    async with LifespanManager(app), httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield component, http


@dataclass(frozen=True)
class Bridge:
    http: httpx.AsyncClient
    service: Service
    matrix: RecordingClient


@asynccontextmanager
async def bridge(
    settings: B,
    routes: Callable[[B, Service], Sequence[BaseRoute]],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
) -> AsyncIterator[Bridge]:
    """A bridge's app on the outbox its settings name, sending to a recorder."""
    matrix = RecordingClient()

    def recorder(settings: ServiceSettings, session: SessionStore) -> RecordingClient:
        return matrix

    def build(settings: B) -> Service:
        return Service.from_settings(settings, client=recorder)

    async with serving(settings, build, routes, not_durable=not_durable) as (service, http):
        yield Bridge(http, service, matrix)
    # the app's lifespan started the service and stopped it
    assert matrix.started
    assert matrix.closed
