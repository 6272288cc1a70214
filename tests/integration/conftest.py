"""Real components for the integration tier: Synapse on SQLite, PostgreSQL and Redis, on loopback;
and the synapse chart's worker cluster booted from its rendered configuration, with stand-ins for
MAS and livekit-jwt and the real Envoy as its router."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.mas import MasStandIn
from devstack.pgbouncer import LocalPgbouncer
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.redis import LocalRedis
from devstack.synapse import Account, LocalSynapse, lift_rate_limit, register
from devstack.synapse_cluster import MAS_SECRET, Cluster, boot
from matrix_stack.shared.bridge.metrics import Metrics
from matrix_stack.shared.matrix.client import MatrixClient
from matrix_stack.shared.outbox.engine import Outbox
from matrix_stack.shared.outbox.postgres import PostgresStore
from matrix_stack.shared.outbox.sqlite import SqliteStore
from matrix_stack.shared.outbox.store import OutboxStore
from matrix_stack.shared.route import envoy as local_envoy
from tests.charts import helm
from tests.charts.synapse_chart import CI, ONE_EACH, REGISTRATION_KEY, by_name, registration_of
from tests.integration import e2ee_reader

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


MakeReader = Callable[..., Awaitable[e2ee_reader.Reader]]
_reader_users: set[str] = set()  # registered on the session's Synapse


@pytest.fixture(scope="session")
def e2ee_reader_installed() -> None:
    e2ee_reader.install()


@pytest.fixture
async def e2ee_readers(
    e2ee_reader_installed: None,
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    admin: Account,
    tmp_path: Path,
) -> AsyncIterator[MakeReader]:
    """Logged-in E2EE readers (Element's crypto, one new device each): `await make("alice")`
    registers alice if needed (PASSWORD, no message rate limit) and logs a new device in (other
    keywords go to `Reader.login`); all stop after the test. Each one's log is reader-N-NAME.log in
    the test's tmp_path."""
    made: list[e2ee_reader.Reader] = []

    async def make(name: str, *, homeserver: str | None = None, **login: Any) -> e2ee_reader.Reader:
        if name not in _reader_users:  # registering again would log in: a device without keys
            account = await register(synapse, http, name, PASSWORD)
            await lift_rate_limit(admin, account.user_id)
            _reader_users.add(name)
        reader = await e2ee_reader.Reader.start(tmp_path / f"reader-{len(made)}-{name}.log")
        made.append(reader)
        await reader.login(homeserver or synapse.url, name, PASSWORD, **login)
        return reader

    yield make
    await asyncio.gather(*(reader.close() for reader in made))


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


# -- The synapse chart's worker cluster, booted once per session from the rendered ConfigMap -------
# Its tests are in tests/integration/test_synapse_*.py. test_clients_through_the_router reads the
# router's whole access log, so it runs before the router's other users: files run in name order
# (cluster, mas, matrixrtc, monitoring), as the single module they came from did.


@pytest.fixture(scope="session")
def synapse_chart_dependencies() -> None:
    helm.build_dependencies("synapse")
    helm.build_dependencies("matrix-alertmanager-receiver")  # its rules and dashboard in the alerting tests


@pytest.fixture(scope="session")
def mas() -> Iterator[MasStandIn]:
    """MAS as Synapse sees it (the chart enables MAS by default; MAS itself cannot be installed here)."""
    stand_in = MasStandIn(free_port(), synapse="", shared_secret=MAS_SECRET)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@dataclass
class Forwarded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LivekitJwtStandIn:
    """Where the registration's proxy_url points: records what Synapse forwards, answers 200."""

    hs_token: str = ""
    received: list[Forwarded] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                stand_in.received.append(Forwarded(self.command, self.path, headers, body))
                reply = json.dumps({"jwt": "from-the-stand-in", "url": "wss://sfu.example.org"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="session")
def livekit_jwt() -> Iterator[LivekitJwtStandIn]:
    stand_in = LivekitJwtStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="session")
def cluster(
    synapse_chart_dependencies: None,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: LocalPostgres,
    redis: LocalRedis,
    mas: MasStandIn,
    livekit_jwt: LivekitJwtStandIn,
) -> Iterator[Cluster]:
    documents = helm.template("synapse", CI / "default-values.yaml", values=ONE_EACH)
    data = dict(by_name(documents, "ConfigMap", "t-synapse")["data"])
    config = yaml.safe_load(data["homeserver.yaml"])
    directory = tmp_path_factory.mktemp("cluster")
    # The registration is a file of the chart's Secret (mounted at /secrets/synapse in every pod):
    # here the same file, written locally, with only the address of livekit-jwt changed.
    assert config["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}"]
    registration = registration_of(documents)
    registration["io.element.msc4512.proxy_url"] = livekit_jwt.url
    livekit_jwt.hs_token = registration["hs_token"]
    local = directory / REGISTRATION_KEY
    local.write_text(yaml.safe_dump(registration))
    config["app_service_config_files"] = [str(local)]
    data["homeserver.yaml"] = yaml.safe_dump(config)
    instances = sorted(
        (set(config["instance_map"]) - {"main"})
        | set(config["pusher_instances"]) | set(config["federation_sender_instances"])
        | {config["run_background_tasks_on"], config["update_user_directory_from_worker"],
           config["media_instance_running_background_jobs"]}
    )  # fmt: skip
    database = postgres.create_database("synapse_cluster")
    pgbouncer = LocalPgbouncer(free_port(), postgres.port)
    pgbouncer.start()
    started = boot(data, instances, directory=directory, postgres_port=postgres.port,
                   database=database.rsplit("/", 1)[1], redis_port=redis.port, pgbouncer_port=pgbouncer.port,
                   mas_endpoint=mas.url, replicas={"room": 2, "sync": 2, "client_reader": 2})  # fmt: skip
    mas.synapse = f"http://127.0.0.1:{started.by_pool('main').port(8008)}"
    yield started
    started.stop()
    pgbouncer.stop()


def _login(http: httpx.Client, mas: MasStandIn, name: str, admin: bool = False) -> tuple[str, dict[str, str]]:
    """A user logs in through MAS's compatibility login, which provisions them in Synapse."""
    mas.passwords[name] = f"pw-{name}-123"
    if admin:
        mas.admins.add(name)
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
            "password": mas.passwords[name]}  # fmt: skip
    reply = http.post(f"{mas.url}_matrix/client/v3/login", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["user_id"], {"Authorization": f"Bearer {reply.json()['access_token']}"}


@pytest.fixture(scope="session")
def router(
    cluster: Cluster, mas: MasStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local_envoy.LocalEnvoy]:
    """The chart's router configuration (same values as the cluster) in the real Envoy, in front of it."""
    documents = helm.template("synapse", CI / "default-values.yaml", values=ONE_EACH)
    config = local_envoy.router_config(documents)
    endpoints: dict[str, list[tuple[str, int]]] = {"mas": [("127.0.0.1", mas.port)]}
    for process in cluster.processes:
        if 8008 in process.ports:
            endpoints.setdefault(process.pool, []).append(("127.0.0.1", process.port(8008)))
    port, metrics, admin = local_envoy.local_ports()
    log = tmp_path_factory.mktemp("router") / "access.log"
    running = local_envoy.LocalEnvoy(
        local_envoy.localize(
            config, endpoints, port=port, metrics_port=metrics, admin_port=admin, access_log=log
        ),
        access_log=log,
    )
    running.start()
    yield running
    running.stop()
