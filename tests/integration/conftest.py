"""Real components for the integration tier: Synapse on SQLite, PostgreSQL and Redis, on loopback."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.redis import LocalRedis
from devstack.synapse import Account, LocalSynapse, lift_rate_limit, register
from matrix_stack.shared.bridge.metrics import Metrics
from matrix_stack.shared.matrix.client import MatrixClient
from matrix_stack.shared.outbox.engine import Outbox
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.sqlite import SqliteStore
from matrix_stack.shared.outbox.store import OutboxStore

PASSWORD = "correct horse battery staple"
# Low on purpose: tests that need speed lift it per user; the rate-limit test meets it.
RC_MESSAGE = {"per_second": 2, "burst_count": 3}


@pytest.fixture(scope="session")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    server = LocalSynapse(tmp_path_factory.mktemp("synapse"), free_port(), rc_message=RC_MESSAGE)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def admin(synapse: LocalSynapse, http: httpx.AsyncClient) -> Account:
    return await register(synapse, http, "admin", PASSWORD, admin=True)


@pytest.fixture(scope="session")
async def bot(synapse: LocalSynapse, http: httpx.AsyncClient, admin: Account) -> Account:
    """The account services send as, without Synapse's message rate limit."""
    account = await register(synapse, http, "bot", PASSWORD)
    await lift_rate_limit(admin, account.user_id)
    return account


@pytest.fixture(scope="session")
async def reader(synapse: LocalSynapse, http: httpx.AsyncClient, admin: Account) -> Account:
    """A person in every test room: creates rooms, invites the bot, reads what arrived."""
    account = await register(synapse, http, "reader", PASSWORD)
    await lift_rate_limit(admin, account.user_id)
    return account


_room_names = itertools.count()


@pytest.fixture
async def new_room(reader: Account, bot: Account) -> Callable[..., Awaitable[str]]:
    """A fresh private room made by the reader with the bot invited (not joined)."""

    async def make(*, alias: str | None = None, invite: list[str] | None = None) -> str:
        return await reader.create_room(
            name=f"test room {next(_room_names)}",
            alias=alias,
            invite=invite if invite is not None else [bot.user_id],
        )

    return make


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    server = LocalPostgres(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis() -> Iterator[LocalRedis]:
    server = LocalRedis(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def make_client(synapse: LocalSynapse) -> AsyncIterator[Callable[..., Awaitable[MatrixClient]]]:
    """Started MatrixClients for an account; closed after the test."""
    made: list[MatrixClient] = []

    async def make(account: Account, **options: object) -> MatrixClient:
        client = MatrixClient(synapse.url, account.user_id, access_token=account.access_token, **options)  # type: ignore[arg-type]
        await client.start()
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


MakeStore = Callable[[str], OutboxStore]


@pytest.fixture(params=["sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """Outbox stores by name, on each backend: the same name is the same store within a test."""
    if request.param == "sqlite":
        return lambda name: SqliteStore(tmp_path / f"{name}.sqlite3")
    server: LocalPostgres = request.getfixturevalue("postgres")
    suffix = uuid.uuid4().hex[:8]
    return lambda name: PostgresStore(
        server.dsn(), f"{name}_{suffix}", owner="@tests:localhost", lease_seconds=3
    )


@pytest.fixture
async def make_outbox(make_store: MakeStore) -> AsyncIterator[Callable[..., Awaitable[Outbox]]]:
    """Running outboxes on each backend, with a short backoff ceiling; stopped after."""
    made: list[Outbox] = []

    async def make(client: MatrixClient, *, name: str = "outbox", **options: object) -> Outbox:
        options.setdefault("max_backoff", 1.0)
        options.setdefault("base_backoff", 0.1)
        options.setdefault("survey_seconds", 1.0)
        outbox = Outbox(make_store(name), client, Metrics().outbox, **options)  # type: ignore[arg-type]
        await outbox.open()
        outbox.start()
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        await outbox.stop(drain_timeout=5)
