"""The comparison endpoints, served by uvicorn as the services are:

- `/sentry`, `/alerts/{room}`, `/hooks/{hook}`: read the body and answer 200 (the ceiling of this
  HTTP stack);
- `/commit/sentry`, `/commit/alerts/{room}`, `/commit/hooks/{hook}`: the floor for a bridge's work: read the body, parse the
  JSON, commit one message to the same outbox (PostgreSQL at `BARE_OUTBOX_URL`, else SQLite at
  `BARE_OUTBOX`; group commit, its sender not started: what is measured is accepting, as a bridge
  acknowledges once the message is durable)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.no_sender import NoSender
from matrix_stack.shared.matrix import content
from matrix_stack.shared.outbox.engine import Outbox
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.sqlite import SqliteStore
from matrix_stack.shared.outbox.store import OutboxStore

ROOM = "!bench:localhost"


def _store() -> OutboxStore:
    url = os.environ.get("BARE_OUTBOX_URL")
    if url:
        return PostgresStore(url, "bare_floor", owner="@bare:localhost")
    return SqliteStore(Path(os.environ.get("BARE_OUTBOX") or Path(tempfile.mkdtemp()) / "bare.sqlite3"))


outbox = Outbox(_store(), NoSender())


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await outbox.open()
    yield
    await outbox.stop()


async def receive(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


async def commit(request: Request) -> JSONResponse:
    payload = orjson.loads(await request.body())
    stored = await outbox.enqueue(ROOM, content.message(f"{len(payload)} fields"))
    return JSONResponse({"ok": True, "delivery_id": stored})


app = Starlette(
    routes=[
        Route("/sentry", receive, methods=["POST"]),
        Route("/alerts/{room}", receive, methods=["POST"]),
        Route("/commit/sentry", commit, methods=["POST"]),
        Route("/commit/alerts/{room}", commit, methods=["POST"]),
        Route("/hooks/{hook}", receive, methods=["POST"]),
        Route("/commit/hooks/{hook}", commit, methods=["POST"]),
    ],
    lifespan=lifespan,
)
