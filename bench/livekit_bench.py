"""livekit-jwt: tokens/s and latency of `POST /get_token` with the OpenID token checked for real, against
a bare endpoint that makes the same single userinfo request, in the same run, on the same machine.

The parts are the end-to-end test's: a real Synapse named `127.0.0.1:PORT` serving federation over
TLS (the service takes the name through its resolution, an IP literal with a port: no well-known, no
SRV, and asks `/_matrix/federation/v1/openid/userinfo` there over its SSRF-safe egress), the
LiveKit RoomService stand-in (`python -m devstack.livekit`, its own process) and the
service through its console entry point, twice: with full access for the homeserver (CreateRoom on
every request, as lk-jwt-service does) and restricted (no CreateRoom). The OpenID tokens (a few per
user, a few users) are requested once and reused: one stays valid for an hour, and Synapse does not
rate-limit userinfo (the federation limiter only counts authenticated origins; userinfo has none).

The floor, `bench.livekit_bench:bare_app` served by uvicorn as the services are: a starlette POST
handler doing one httpx GET of the same userinfo URL over TLS with the same CA, answering 200; no
server-name resolution, no JWT, no CreateRoom. Twice: with one kept-alive client (the least work a
lookup needs, and what the service's egress keeps per homeserver) and with a new client, so a new TLS
connection, per request (what the egress did before it kept connections). Full access makes a
second call, CreateRoom on the SFU, that neither of those makes: its floor is a third bare endpoint
making both calls, userinfo then a CreateRoom (protobuf, a bearer JWT signed per call with the
roomCreate grant, as livekit-api signs them) to the same stand-in, each over its kept-alive client.
The one-call and two-call floors run once with httpx (the targets are set against these) and once with
aiohttp, the client the service makes both calls with since it left httpx for its CPU cost (there the
CreateRoom is the service's own RoomService client): the same handler, the same calls, so the ratio
to them is the service's own work alone.
The load is bench/loadgen.py, one loop per token, the loops together making the totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from livekit.api.access_token import AccessToken, VideoGrants
from livekit.protocol import room as livekit_room
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.loadgen import Result, closed_loop, open_loop
from devstack.livekit_jwt import LocalLivekitJwt
from devstack.synapse import LocalSynapse, openid_token, register
from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.sfu import RoomService, TwirpError
from matrix_stack.shared.route.processes import free_ports, port_open, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
USERS = 4
TOKENS_PER_USER = 2  # 8 tokens, one load loop each
CONNECTIONS = 16  # closed loop: keep-alive connections in all, CONNECTIONS // tokens per loop
REQUESTS = int(os.environ.get("LIVEKIT_BENCH_REQUESTS", "2400"))  # closed loop, per target, all rounds
RATE = 100.0  # open loop, requests/s in all
SECONDS = float(os.environ.get("LIVEKIT_BENCH_SECONDS", "12"))  # open loop, per target, all rounds
ROUNDS = int(os.environ.get("LIVEKIT_BENCH_ROUNDS", "3"))
OTHERS_WARNING = 0.2  # of one core: more than this outside the run, and the numbers say so
OPEN_CONNECTIONS = 64  # open loop: the most connections in flight, in all
RATIO_TARGET = 0.8  # of the floor making the same calls
RSS_TARGET_BYTES = 80 * 2**20  # 80 MiB, the unit every RSS figure of this project is in
PASSWORD = "bench-caller-password"
KEY = "bench-key"
SECRET = "bench-livekit-secret-of-forty-bytes-xxxx"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The bare endpoint's settings, from the environment of its uvicorn process.
URL_ENV = "LIVEKIT_BENCH_USERINFO_URL"
CA_ENV = "LIVEKIT_BENCH_CA_FILE"
CLIENT_ENV = "LIVEKIT_BENCH_CLIENT"  # keep-alive: one client for every request; otherwise one per request
SFU_ENV = "LIVEKIT_BENCH_SFU_URL"  # set: CreateRoom there after the userinfo (the full-access floor)
ROOM_SERVICE = "/twirp/livekit.RoomService/CreateRoom"
# The service's defaults, so the floor names and creates the rooms the service does.
_DEFAULTS = {name: field.default for name, field in LivekitJwtSettings.model_fields.items()}


# -- the bare endpoint --------------------------------------------------------------------------------


@dataclass
class _Floor:
    url: str
    verify: ssl.SSLContext
    shared: httpx.AsyncClient | None
    sfu: httpx.AsyncClient | None  # the full-access floor's second call
    session: aiohttp.ClientSession | None = None  # the userinfo over aiohttp instead, as the service asks it
    rooms: RoomService | None = None  # and CreateRoom with the service's own client (aiohttp)

    async def userinfo(self, access_token: str) -> tuple[int, bytes]:
        params = {"access_token": access_token}
        if self.session is not None:
            async with self.session.get(self.url, params=params, ssl=self.verify) as answer:
                return answer.status, await answer.read()
        if self.shared is not None:
            response = await self.shared.get(self.url, params=params)
        else:
            async with _client(self.verify) as client:
                response = await client.get(self.url, params=params)
        return response.status_code, response.content

    async def create_room(self, name: str) -> bool:
        timeouts = {"empty_timeout": _DEFAULTS["room_empty_timeout"],
                    "departure_timeout": _DEFAULTS["room_departure_timeout"]}  # fmt: skip
        if self.rooms is not None:
            try:
                await self.rooms.create_room(name, **timeouts)
            except TwirpError:
                return False
            return True
        token = AccessToken(KEY, SECRET).with_grants(VideoGrants(room_create=True)).to_jwt()
        request = livekit_room.CreateRoomRequest(name=name, **timeouts)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/protobuf"}
        assert self.sfu is not None
        response = await self.sfu.post(ROOM_SERVICE, content=request.SerializeToString(), headers=headers)
        return response.status_code == 200


def _client(verify: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=verify, trust_env=False, timeout=10.0)


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    verify = ssl.create_default_context()  # the system's CAs and the homeserver's, as the service's
    verify.load_verify_locations(cafile=os.environ[CA_ENV])
    kind = os.environ.get(CLIENT_ENV)
    shared = _client(verify) if kind == "keep-alive" else None
    sfu_url = os.environ.get(SFU_ENV)
    sfu = httpx.AsyncClient(base_url=sfu_url, trust_env=False, timeout=10.0) if sfu_url and shared else None
    session = aiohttp.ClientSession(trust_env=False) if kind == "keep-alive-aiohttp" else None
    rooms = RoomService(sfu_url, KEY, SECRET) if sfu_url and session else None
    app.state.floor = _Floor(os.environ[URL_ENV], verify, shared, sfu, session, rooms)
    try:
        yield
    finally:
        for client in (shared, sfu):
            if client is not None:
                await client.aclose()
        if session is not None:
            await session.close()
        if rooms is not None:
            await rooms.aclose()


async def _get_token(request: Request) -> Response:
    floor: _Floor = request.app.state.floor
    body = json.loads(await request.body())
    status, content = await floor.userinfo(body["openid_token"]["access_token"])
    ok = status == 200
    if ok and (floor.sfu is not None or floor.rooms is not None):
        ok = await floor.create_room(hashing.room(_DEFAULTS["hash_scheme"], body["room_id"], body["slot_id"]))
    return Response(content, 200 if ok else 502, media_type="application/json")


bare_app = Starlette(routes=[Route("/get_token", _get_token, methods=["POST"])], lifespan=_lifespan)


def start_bare(
    port: int, client: str, userinfo_url: str, ca_file: Path, log: Path, sfu_url: str | None = None
) -> subprocess.Popen[bytes]:
    env = {**os.environ, URL_ENV: userinfo_url, CA_ENV: str(ca_file), CLIENT_ENV: client}
    if sfu_url is not None:
        env[SFU_ENV] = sfu_url
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bench.livekit_bench:bare_app", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log", "--log-level", "warning", "--no-server-header"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    wait_ready(f"bare ({client})", process, lambda: port_open(port), timeout=30, log=log)
    return process


def start_sfu(port: int, log: Path) -> subprocess.Popen[bytes]:
    """The RoomService stand-in in its own process (its log: a line per call)."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack.livekit", "--port", str(port), "--key", KEY,
             "--secret", SECRET], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=output,
        )  # fmt: skip
    wait_ready("livekit stand-in", process, lambda: port_open(port), timeout=30, log=log)
    return process


# -- measuring ----------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def idle_ticks() -> tuple[int, int]:
    """(idle, all) CPU ticks of the machine so far."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return values[3] + values[4], sum(values[:8])  # idle + iowait; user..steal


async def machine_busy(seconds: float) -> float:
    """The share of all cores busy over the next `seconds`."""
    idle, ticks = idle_ticks()
    await asyncio.sleep(seconds)
    idle_after, ticks_after = idle_ticks()
    return 1 - (idle_after - idle) / max(ticks_after - ticks, 1)


def _merge(results: list[Result], elapsed: float) -> Result:
    merged = Result(elapsed=elapsed)
    for result in results:
        merged.latencies += result.latencies
        for status, count in result.statuses.items():
            merged.statuses[status] = merged.statuses.get(status, 0) + count
    return merged


async def closed(url: str, bodies: list[bytes], *, requests: int) -> Result:
    """CONNECTIONS keep-alive connections as fast as they are answered, each posting one token."""
    started = time.perf_counter()
    results = await asyncio.gather(*(
        closed_loop(url, body, requests=requests // len(bodies), connections=CONNECTIONS // len(bodies))
        for body in bodies))  # fmt: skip
    return _merge(list(results), time.perf_counter() - started)


async def paced(url: str, bodies: list[bytes], *, rate: float, seconds: float) -> Result:
    """`rate` requests/s in all, the tokens in turn: loop k sends at start + (k + n * tokens) / rate."""

    async def loop(index: int, body: bytes) -> Result:
        await asyncio.sleep(index / rate)
        return await open_loop(url, body, rate=rate / len(bodies), seconds=seconds,
                               max_connections=OPEN_CONNECTIONS // len(bodies))  # fmt: skip

    started = time.perf_counter()
    results = await asyncio.gather(*(loop(index, body) for index, body in enumerate(bodies)))
    return _merge(list(results), time.perf_counter() - started)


@dataclass
class Target:
    label: str
    url: str  # where the load posts
    pid: int
    service: bool  # livekit-jwt (not a bare endpoint)
    full_access: bool = False  # makes the CreateRoom call (livekit-jwt with full access, or its floor)
    floor: str = ""  # a service's: the label of the bare endpoint making the same calls


@dataclass
class Measured:
    """One target's rounds, added up."""

    results: list[Result] = field(default_factory=list)
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # name -> CPU time over the windows
    window: float = 0.0  # seconds, all rounds
    idle_ticks: int = 0
    all_ticks: int = 0
    rooms_created: int = 0

    @property
    def result(self) -> Result:
        return _merge(self.results, sum(result.elapsed for result in self.results))

    @property
    def cpu(self) -> dict[str, float]:
        """name -> share of one core over the windows."""
        return {name: spent / self.window for name, spent in self.cpu_seconds.items()}

    @property
    def machine_busy(self) -> float:
        """Share of all cores."""
        return 1 - self.idle_ticks / max(self.all_ticks, 1)


@dataclass
class Run:
    synapse: LocalSynapse
    sfu_pid: int
    sfu_log: Path
    bodies: list[bytes]
    busy_before: float  # share of all cores busy before anything of the run had started
    maximum: dict[str, Measured] = field(default_factory=dict)
    latency: dict[str, Measured] = field(default_factory=dict)

    def rooms_created(self) -> int:
        """CreateRoom calls the stand-in has answered so far (its log: one line per call)."""
        text = self.sfu_log.read_text(errors="replace") if self.sfu_log.exists() else ""
        return sum(1 for line in text.splitlines() if " CreateRoom " in line and line.endswith("-> ok"))

    async def measure(
        self, target: Target, measured: Measured, load: Callable[[], Coroutine[Any, Any, Result]]
    ) -> None:
        """One round of `load` on `target`, added to `measured`, with the CPU each process spent."""
        assert self.synapse.process is not None
        pids = {"synapse": self.synapse.process.pid, target.label.split(",")[0]: target.pid,
                "sfu stand-in": self.sfu_pid, "load": os.getpid()}  # fmt: skip
        rooms = self.rooms_created()
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        idle, ticks = idle_ticks()
        started = time.perf_counter()
        measured.results.append(await load())
        measured.window += time.perf_counter() - started
        for name, pid in pids.items():
            measured.cpu_seconds[name] = measured.cpu_seconds.get(name, 0.0) + cpu_seconds(pid) - before[name]
        idle_after, ticks_after = idle_ticks()
        measured.idle_ticks += idle_after - idle
        measured.all_ticks += ticks_after - ticks
        measured.rooms_created += self.rooms_created() - rooms


async def check(target: Target, bodies: list[bytes]) -> None:
    """Before the load: every token gets a 200 (with a JWT, from the service) through this target."""
    async with httpx.AsyncClient(timeout=30) as http:
        for body in bodies:
            answer = await http.post(target.url, content=body, headers={"Content-Type": "application/json"})
            if answer.status_code != 200 or (target.service and "jwt" not in answer.json()):
                raise RuntimeError(f"{target.label}: {answer.status_code} {answer.text[:300]}")


# -- the run ------------------------------------------------------------------------------------------


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-livekit-") as name:
        await run(Path(name))


async def run(directory: Path) -> None:
    ports = free_ports(10)
    port, federation_port, sfu_port, full_port, restricted_port, kept_port, fresh_port, two_port = ports[:8]
    aio_port, aio_two_port = ports[8:]
    synapse = LocalSynapse.federating(directory / "synapse", port, federation_port)
    sfu: subprocess.Popen[bytes] | None = None
    bares: list[subprocess.Popen[bytes]] = []
    services: list[LocalLivekitJwt] = []
    busy_before = await machine_busy(2.0)
    try:
        synapse.start()
        sfu_log = directory / "livekit.log"
        sfu = start_sfu(sfu_port, sfu_log)

        env = {"LIVEKIT_URL": f"ws://127.0.0.1:{sfu_port}", "KEY": KEY, "SECRET": SECRET,
               "FEDERATION_ALLOW": "127.0.0.1/32", "FEDERATION_CA_FILE": str(synapse.federation_tls.ca),
               "LOG_LEVEL": "WARNING"}  # fmt: skip
        full = LocalLivekitJwt({**env, "FULL_ACCESS_HOMESERVERS": synapse.server_name},
                               directory=directory / "full", port=full_port)  # fmt: skip
        restricted = LocalLivekitJwt({**env, "FULL_ACCESS_HOMESERVERS": "other.example"},
                                     directory=directory / "restricted", port=restricted_port)  # fmt: skip
        for service in (full, restricted):
            services.append(service)
            service.start()
        userinfo_url = f"{synapse.federation_url}/_matrix/federation/v1/openid/userinfo"
        for client, bare_port in (("keep-alive", kept_port), ("new", fresh_port)):
            bares.append(start_bare(bare_port, client, userinfo_url, synapse.federation_tls.ca,
                                    directory / f"bare-{client}.log"))  # fmt: skip
        bares.append(start_bare(two_port, "keep-alive", userinfo_url, synapse.federation_tls.ca,
                                directory / "bare-two-calls.log", f"http://127.0.0.1:{sfu_port}"))  # fmt: skip
        bares.append(start_bare(aio_port, "keep-alive-aiohttp", userinfo_url, synapse.federation_tls.ca,
                                directory / "bare-aiohttp.log"))  # fmt: skip
        bares.append(start_bare(aio_two_port, "keep-alive-aiohttp", userinfo_url, synapse.federation_tls.ca,
                                directory / "bare-two-calls-aiohttp.log", f"http://127.0.0.1:{sfu_port}"))  # fmt: skip
        await asyncio.sleep(2.0)  # settled, no request yet
        assert full.process is not None
        assert restricted.process is not None
        idle = {"full access": rss_bytes(full.process.pid), "restricted": rss_bytes(restricted.process.pid)}

        bodies: list[bytes] = []
        async with httpx.AsyncClient(timeout=60) as http:
            for user in range(USERS):
                account = await register(synapse, http, f"caller{user}", PASSWORD)
                for _ in range(TOKENS_PER_USER):
                    n = len(bodies)
                    bodies.append(json.dumps({
                        "room_id": "!bench-call:example.org", "slot_id": "m.call#ROOM",
                        "openid_token": await openid_token(account),
                        "member": {"id": f"member-{n}", "claimed_user_id": account.user_id,
                                   "claimed_device_id": f"DEVICE{n}"},
                    }).encode())  # fmt: skip
        assert CONNECTIONS % len(bodies) == 0
        assert sfu.pid is not None

        one_call, two_calls = "bare, kept-alive client", "bare, two calls (+ CreateRoom)"
        targets = [
            Target(one_call, f"http://127.0.0.1:{kept_port}/get_token", bares[0].pid, False),
            Target("bare, new client per request", f"http://127.0.0.1:{fresh_port}/get_token", bares[1].pid, False),
            Target(two_calls, f"http://127.0.0.1:{two_port}/get_token", bares[2].pid, False, True),
            Target("bare, kept-alive aiohttp", f"http://127.0.0.1:{aio_port}/get_token", bares[3].pid, False),
            Target("bare, two calls, aiohttp", f"http://127.0.0.1:{aio_two_port}/get_token", bares[4].pid, False,
                   True),
            Target("livekit-jwt, full access", f"{full.url}/get_token", full.process.pid, True, True, two_calls),
            Target("livekit-jwt, restricted", f"{restricted.url}/get_token", restricted.process.pid, True, False,
                   one_call),
        ]  # fmt: skip
        state = Run(synapse, sfu.pid, sfu_log, bodies, busy_before)
        checked: dict[str, int] = {}
        for target in targets:
            rooms = state.rooms_created()
            await check(target, bodies)
            checked[target.label] = state.rooms_created() - rooms
        for target in targets:  # warm-up
            await closed(target.url, bodies, requests=len(bodies) * 10)
        # Rounds, the targets in turn: whatever else the machine does meanwhile falls on all of them.
        for _ in range(ROUNDS):
            for target in targets:
                load = functools.partial(closed, target.url, bodies, requests=REQUESTS // ROUNDS)
                await state.measure(target, state.maximum.setdefault(target.label, Measured()), load)
        for _ in range(ROUNDS):
            for target in targets:
                load = functools.partial(paced, target.url, bodies, rate=RATE, seconds=SECONDS / ROUNDS)
                await state.measure(target, state.latency.setdefault(target.label, Measured()), load)
        after = {"full access": rss_bytes(full.process.pid), "restricted": rss_bytes(restricted.process.pid)}
        for service in services:
            if service.process is None or service.process.poll() is not None:
                raise RuntimeError(f"a livekit-jwt process exited; its log: {service.log}")
    except BaseException:
        for service in services:
            if service.log.exists():
                print(f"{service.log}, last lines:\n{service.log.read_text(errors='replace')[-2000:]}",
                      file=sys.stderr)  # fmt: skip
        raise
    finally:
        closers: list[Callable[[], None]] = [service.close for service in services]
        closers += [functools.partial(stop, process) for process in [*bares, sfu]]
        closers.append(synapse.stop)
        for close in closers:  # each, even when one before it fails
            with contextlib.suppress(Exception):
                close()
    report(state, targets, checked, idle, after)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MiB ({size / 1e6:.1f} MB)"


def report(
    state: Run, targets: list[Target], checked: dict[str, int], idle: dict[str, int], after: dict[str, int]
) -> None:
    cores = os.cpu_count() or 1
    width = max(len(target.label) for target in targets)
    print(f"livekit-jwt: POST /get_token (MSC4195 body) with the OpenID token checked at a real Synapse "
          f"{metadata.version('matrix-synapse')} (server name 127.0.0.1:PORT, federation over TLS), LiveKit "
          f"RoomService stand-in (Twirp, livekit-api {metadata.version('livekit-api')}), service log level "
          f"WARNING; {len(state.bodies)} OpenID tokens of {USERS} users, reused, one load loop each")  # fmt: skip
    print("  floor: a bare starlette app on the same uvicorn setup whose POST handler does one httpx GET of "
          "the same userinfo URL over TLS with the same CA and answers 200 (no resolution, no JWT, no "
          "CreateRoom), with one kept-alive client (as the service's egress keeps connections), and with "
          "a new client (a new TLS connection) per request; for full access, the same handler then making "
          "the CreateRoom call too (a JWT signed per call, protobuf, a kept-alive client); and both again "
          "with aiohttp instead of httpx, the client the service uses for both calls")  # fmt: skip
    print(f"  note: this machine has {cores} core{'s' if cores != 1 else ''}, shared by Synapse, the target "
          "(livekit-jwt or the bare endpoint), the LiveKit stand-in and the load generator, so read the ratios, "
          "not the absolute rates; cpu: % of one core over the window; busy: % of all cores; others: CPU "
          "not charged to these processes (other programs, the kernel's share of loopback), % of one core; before the run "
          f"the machine was {state.busy_before * 100:.0f}% busy")  # fmt: skip
    calls = ", ".join(f"{target.label} {checked[target.label]}" for target in targets if target.full_access or
                      target.service)  # fmt: skip
    print(f"  checks: every token answered 200 through every target; CreateRoom calls for "
          f"{len(state.bodies)} requests: {calls}")  # fmt: skip
    for label in ("full access", "restricted"):
        verdict = "ok" if idle[label] < RSS_TARGET_BYTES else "OVER"
        print(f"  RSS {label}: idle {_mb(idle[label])} (target < 80 MiB: {verdict}), after the load "
              f"{_mb(after[label])}")  # fmt: skip

    def line(target: Target, measured: Measured) -> str:
        cpu = ", ".join(f"{name} {share * 100:.0f}%" for name, share in measured.cpu.items()
                        if name != "sfu stand-in" or target.full_access)  # fmt: skip
        rooms = f"  CreateRoom calls {measured.rooms_created}" if target.service or target.full_access else ""
        others = max(measured.machine_busy * cores - sum(measured.cpu.values()), 0.0)
        disturbed.append(others)
        return (f"  {target.label:{width}}: {measured.result.summary()}\n  {'':{width}}  cpu: {cpu}; busy "
                f"{measured.machine_busy * 100:.0f}%, others {others * 100:.0f}%{rooms}")  # fmt: skip

    disturbed: list[float] = []
    bare_labels = [target.label for target in targets if not target.service]
    services = [target for target in targets if target.service]
    print(f"max tokens/s ({CONNECTIONS} keep-alive connections, {REQUESTS} requests per target in {ROUNDS} "
          "rounds, the targets in turn):")  # fmt: skip
    for target in targets:
        print(line(target, state.maximum[target.label]))
    rate = {label: measured.result.rate for label, measured in state.maximum.items()}
    for target in services:
        ratios = ", ".join(f"{rate[target.label] / rate[bare]:.2f}x {bare}" for bare in bare_labels)
        print(f"  ratio {target.label} / bare: {ratios} (target >= {RATIO_TARGET}x {target.floor}: "
              f"{'ok' if rate[target.label] / rate[target.floor] >= RATIO_TARGET else 'MISSED'})")  # fmt: skip
    print(f"latency at {RATE:.0f} requests/s, {SECONDS:g} s per target in {ROUNDS} rounds (from the scheduled "
          "send time):")  # fmt: skip
    for target in targets:
        print(line(target, state.latency[target.label]))
    for target in services:
        ours = state.latency[target.label].result
        ratios = ", ".join(
            f"p50 {ours.percentile(0.5) / state.latency[bare].result.percentile(0.5):.2f}x / p99 "
            f"{ours.percentile(0.99) / state.latency[bare].result.percentile(0.99):.2f}x {bare}"
            for bare in bare_labels
        )
        print(f"  ratio {target.label} / bare (lower is better): {ratios}")
    if max(disturbed) > OTHERS_WARNING:
        print(f"  WARNING: up to {max(disturbed) * 100:.0f}% of a core went to work outside this run (others): "
              "the numbers are skewed; run it again on a quiet machine")  # fmt: skip
