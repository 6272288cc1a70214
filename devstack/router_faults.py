"""Worker loss and rolling restarts, through the real router in front of the real worker cluster.

A steady load of the realistic request mix goes through the chart's router (the real Envoy) to the
cluster booted from the chart's configuration; one instance of a pool is then killed (-9, a crash)
or stopped as a rolling restart stops a pod: it leaves discovery first (a stopping pod is no longer
ready, so DNS drops it), keeps serving what it has for the drain (the pod's preStop), then gets
SIGTERM and comes back. What clients saw is counted: requests sent, failures by status, failures
that were allowed (only requests that were in flight on a killed instance and are not safe to
repeat), the longest time any key (room, user) had no answer, and when the router had the pool
whole again with every hashed key back on its instance. The integration test asserts the counts
(tests/integration/test_synapse_router_faults.py); `make bench BENCH=router-faults` prints it all.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from devstack.mas import MasStandIn
from devstack.synapse_cluster import Cluster, Process
from matrix_stack.shared.route import envoy as local_envoy
from matrix_stack.shared.route.processes import http_ok, wait_ready

LONG_POLL_MS = 3000  # each user keeps one long-polling /sync open, as clients do


@dataclass(frozen=True)
class Kind:
    """One kind of request in the mix."""

    name: str
    method: str
    pool: str  # the pool the router sends it to
    weight: int  # how many in each cycle of the mix
    safe: bool  # retried after a reset: GET, HEAD, PUT with a transaction id


# Sync and timelines dominate client traffic; then sending, receipts, key queries and the rest.
MIX = (
    Kind("sync", "GET", "sync", 6, True),
    Kind("messages", "GET", "room", 5, True),
    Kind("send", "PUT", "room", 4, True),
    Kind("topic", "PUT", "room", 1, False),  # a state PUT has no transaction id
    Kind("joined_rooms", "GET", "client_reader", 2, True),
    Kind("keys_query", "POST", "client_reader", 2, False),
    Kind("receipt", "POST", "receipts", 2, False),
    Kind("pushrules", "GET", "push_rules", 1, True),
)


@dataclass
class User:
    user_id: str
    headers: dict[str, str]
    since: str | None = None


@dataclass
class Sent:
    kind: Kind
    key: str  # the room, or the user
    started: float
    ended: float
    status: int  # 0: no answer at all (the connection failed)
    long_poll: bool = False


@dataclass
class World:
    """Who sends and where: users who all joined every room, and an event in each to point receipts at."""

    users: list[User]
    rooms: list[str]
    events: dict[str, str]


def login(http: httpx.Client, mas: MasStandIn, name: str) -> User:
    mas.passwords[name] = f"pw-{name}-fault"
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
            "password": mas.passwords[name]}  # fmt: skip
    reply = http.post(f"{mas.url}_matrix/client/v3/login", json=body)
    reply.raise_for_status()
    return User(reply.json()["user_id"], {"Authorization": f"Bearer {reply.json()['access_token']}"})


def prepare(url: str, mas: MasStandIn, *, users: int = 6, rooms: int = 8, prefix: str = "fault") -> World:
    """Users and rooms through the router, before any fault."""
    with httpx.Client(base_url=url, timeout=60) as http:
        people = [login(http, mas, f"{prefix}{n}") for n in range(users)]
        ids, events = [], {}
        for n in range(rooms):
            created = http.post("/_matrix/client/v3/createRoom", headers=people[0].headers,
                                json={"name": f"{prefix} room {n}", "preset": "public_chat"})  # fmt: skip
            created.raise_for_status()
            room = created.json()["room_id"]
            for user in people[1:]:
                http.post(f"/_matrix/client/v3/join/{room}", headers=user.headers, json={}).raise_for_status()
            path = f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{prefix}-setup-{n}"
            sent = http.put(path, headers=people[0].headers, json={"msgtype": "m.text", "body": "hello"})
            sent.raise_for_status()
            ids.append(room)
            events[room] = sent.json()["event_id"]
        for user in people:
            reply = http.get("/_matrix/client/v3/sync", params={"timeout": 0}, headers=user.headers)
            reply.raise_for_status()
            user.since = reply.json()["next_batch"]
    return World(people, ids, events)


class Load:
    """The mix at a fixed rate (open loop: a slow answer does not slow the sending), plus one long
    poll per user, until stopped. Every request is recorded with its outcome."""

    def __init__(self, url: str, world: World, rate: float, in_flight: int = 32) -> None:
        self.url, self.world, self.rate = url, world, rate
        # At most this many at once: a slow cluster (a busy machine) slows the sending rather than
        # piling up requests without end.
        self._slots = asyncio.Semaphore(in_flight)
        self.sent: list[Sent] = []
        self._stop = asyncio.Event()
        self._transactions = itertools.count()

    def _request(self, kind: Kind, n: int) -> tuple[str, str, dict[str, Any], str]:
        """(path, key, httpx options, user) for the n-th request of a kind."""
        world = self.world
        user = world.users[n % len(world.users)]
        room = world.rooms[(n // len(world.users) + n) % len(world.rooms)]
        options: dict[str, Any] = {"headers": user.headers}
        if kind.name == "sync":
            options["params"] = {"timeout": 0, **({"since": user.since} if user.since else {})}
            return "/_matrix/client/v3/sync", user.user_id, options, user.user_id
        if kind.name == "messages":
            options["params"] = {"dir": "b", "limit": 5}
            return f"/_matrix/client/v3/rooms/{room}/messages", room, options, user.user_id
        if kind.name == "send":
            options["json"] = {"msgtype": "m.text", "body": f"load {n}"}
            txn = f"load-{os.getpid()}-{next(self._transactions)}"
            return f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}", room, options, user.user_id
        if kind.name == "topic":  # by the room's creator, who may
            options = {"headers": world.users[0].headers, "json": {"topic": f"topic {n}"}}
            return f"/_matrix/client/v3/rooms/{room}/state/m.room.topic/", room, options, user.user_id
        if kind.name == "joined_rooms":
            return "/_matrix/client/v3/joined_rooms", user.user_id, options, user.user_id
        if kind.name == "keys_query":
            options["json"] = {"device_keys": {user.user_id: []}}
            return "/_matrix/client/v3/keys/query", user.user_id, options, user.user_id
        if kind.name == "receipt":
            options["json"] = {}
            return (f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{world.events[room]}", room, options,
                    user.user_id)  # fmt: skip
        return "/_matrix/client/v3/pushrules/", user.user_id, options, user.user_id

    async def _one(self, http: httpx.AsyncClient, kind: Kind, n: int) -> None:
        path, key, options, user_id = self._request(kind, n)
        started = time.monotonic()
        try:
            reply = await http.request(kind.method, path, **options)
            status = reply.status_code
            if kind.name == "sync" and status == 200:
                user = next(u for u in self.world.users if u.user_id == user_id)
                user.since = reply.json()["next_batch"]
        except httpx.HTTPError:
            status = 0
        finally:
            self._slots.release()
        self.sent.append(Sent(kind, key, started, time.monotonic(), status))

    async def _long_poll(self, http: httpx.AsyncClient, user: User) -> None:
        since = user.since
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = await http.get("/_matrix/client/v3/sync", headers=user.headers,
                                       params={"timeout": LONG_POLL_MS, "since": since or ""})  # fmt: skip
                status = reply.status_code
                if status == 200:
                    since = reply.json()["next_batch"]
            except httpx.HTTPError:
                status = 0
            self.sent.append(Sent(MIX[0], user.user_id, started, time.monotonic(), status, long_poll=True))
            if status != 200:
                await asyncio.sleep(0.2)

    async def run(self) -> None:
        cycle = itertools.cycle([kind for kind in MIX for _ in range(kind.weight)])
        counts: dict[str, int] = {}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as http:
            polls = [asyncio.create_task(self._long_poll(http, user)) for user in self.world.users]
            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic()
            for index in itertools.count():
                if self._stop.is_set():
                    break
                delay = start + index / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._slots.acquire()
                kind = next(cycle)
                counts[kind.name] = counts.get(kind.name, 0) + 1
                tasks.append(asyncio.create_task(self._one(http, kind, counts[kind.name])))
            await asyncio.gather(*tasks, *polls)

    def stop(self) -> None:
        self._stop.set()


# -- the router's view -------------------------------------------------------------------------------


def start_router(
    documents: list[dict[str, Any]], cluster: Cluster, mas: MasStandIn, directory: Path
) -> local_envoy.LocalEnvoy:
    """The chart's router for the cluster, its endpoints discovered from files (as DNS would list pods)."""
    endpoints: dict[str, list[tuple[str, int]]] = {"mas": [("127.0.0.1", mas.port)]}
    for process in cluster.processes:
        if 8008 in process.ports:
            endpoints.setdefault(process.pool, []).append(("127.0.0.1", process.port(8008)))
    port, metrics, admin = local_envoy.local_ports()
    log = directory / "access.log"
    router = local_envoy.LocalEnvoy(
        local_envoy.localize(local_envoy.router_config(documents), endpoints, port=port, metrics_port=metrics,
                             admin_port=admin, access_log=log, discovery=directory / "endpoints"),
        access_log=log,
    )  # fmt: skip
    router.start()
    return router


def hosts(router: local_envoy.LocalEnvoy, cluster: str) -> dict[int, bool]:
    """The router's instances of a pool kind: port -> healthy (passes health checks, not ejected)."""
    reply = httpx.get(f"http://127.0.0.1:{router.admin_port}/clusters", params={"format": "json"}, timeout=5)
    found: dict[int, bool] = {}
    for status in reply.json()["cluster_statuses"]:
        if status["name"] != cluster:
            continue
        for host in status.get("host_statuses", []):
            health = host["health_status"]
            failed = any(value is True for name, value in health.items() if name.startswith("failed"))
            healthy = health.get("eds_health_status") == "HEALTHY" and not failed
            found[int(host["address"]["socket_address"]["port_value"])] = healthy
    return found


def all_healthy(router: local_envoy.LocalEnvoy, cluster: Cluster) -> bool:
    """Every HTTP instance of the cluster is in the router and healthy."""
    for kind in {p.kind for p in cluster.processes if 8008 in p.ports}:
        ports = {p.port(8008) for p in cluster.processes if p.kind == kind and 8008 in p.ports}
        seen = hosts(router, kind)
        if set(seen) != ports or not all(seen.values()):
            return False
    return True


def wait_whole(router: local_envoy.LocalEnvoy, cluster: Cluster, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not all_healthy(router, cluster):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the router does not have every instance healthy after {timeout} s")
        time.sleep(0.2)


def _set_present(
    router: local_envoy.LocalEnvoy, victim: Process, present: bool, full: dict[str, Any]
) -> None:
    """The victim in or out of its pool's discovered endpoints (`full`: the pool's whole list)."""
    path = local_envoy.endpoints_file(router.config, victim.kind)
    assignment = json.loads(json.dumps(full))
    for group in assignment["endpoints"]:
        group["lb_endpoints"] = [
            e for e in group["lb_endpoints"]
            if present or e["endpoint"]["address"]["socket_address"]["port_value"] != victim.port(8008)
        ]  # fmt: skip
    local_envoy.write_endpoints(path, assignment)


def _access_log(router: local_envoy.LocalEnvoy) -> list[dict[str, Any]]:
    assert router.access_log is not None
    if not router.access_log.exists():
        return []
    return [json.loads(line) for line in router.access_log.read_text().splitlines() if line.strip()]


# -- one fault ----------------------------------------------------------------------------------------


@dataclass
class Timing:
    warm: float = 3.0  # load before the fault
    down: float = 2.0  # a killed instance stays dead this long (a container's restart)
    drain: float = 3.0  # a stopped instance leaves discovery this long before SIGTERM (preStop)
    after: float = 3.0  # load after the pool is whole again


@dataclass
class Outcome:
    scenario: str
    pool: str
    sent: int
    failures: dict[str, int] = field(default_factory=dict)  # "<method> <status>" -> count
    allowed: int = 0  # failed while in flight on the killed instance, and not safe to repeat
    unexpected: int = 0  # every other failure
    longest_no_answer: float = 0.0  # seconds, over every key (room, user) of the load
    back_after: float = 0.0  # seconds from the fault until the pool was whole and healthy again
    router_after: float = 0.0  # of those, after the instance answered again (and was listed again)
    keys: int = 0  # hashed keys seen before the fault and after (hashed pools)
    moved: int = 0  # of those, answered after recovery by another instance than before

    def line(self) -> str:
        failures = ", ".join(f"{k}: {v}" for k, v in sorted(self.failures.items())) or "none"
        layout = f"{self.keys - self.moved}/{self.keys} keys back" if self.keys else "no hashing"
        return (f"{self.scenario:24} {self.sent:6} sent  failures {failures} (allowed {self.allowed}, "
                f"unexpected {self.unexpected})  longest no answer {self.longest_no_answer:5.2f} s  "
                f"whole again after {self.back_after:5.2f} s, {self.router_after:4.2f} s after it answered "
                f"({layout})")  # fmt: skip


def _failed(sent: Sent) -> bool:
    return sent.status == 0 or sent.status >= 500


def _longest_no_answer(sent: list[Sent]) -> float:
    """Per key: from a request's start to the first success of a request for that key started no
    earlier (long polls wait by design and are left out); the longest over every key."""
    longest = 0.0
    by_key: dict[str, list[Sent]] = {}
    for each in sent:
        if not each.long_poll:
            by_key.setdefault(each.key, []).append(each)
    for requests in by_key.values():
        requests.sort(key=lambda s: s.started)
        for index, request in enumerate(requests):
            answered = [s.ended for s in requests[index:] if not _failed(s)]
            if answered:
                longest = max(longest, min(answered) - request.started)
    return longest


def _layout(entries: list[dict[str, Any]], cluster_pools: set[str]) -> dict[str, str]:
    """Hash key -> the instance that answered it last, for a pool's hashed requests."""
    layout = {}
    for entry in entries:
        if entry.get("pool") in cluster_pools and entry.get("hash_key") not in (None, "-", "") and \
                str(entry.get("status", "")).startswith("2"):  # fmt: skip
            layout[entry["hash_key"]] = entry["upstream"]
    return layout


async def fault(
    router: local_envoy.LocalEnvoy,
    cluster: Cluster,
    world: World,
    victim: Process,
    *,
    how: str,
    rate: float,
    timing: Timing | None = None,
) -> Outcome:
    """Load, then `how` ("kill": SIGKILL, "stop": leave discovery, drain, SIGTERM) on the victim, which
    comes back; the load runs on until the router has the pool whole again, and a little after."""
    timing = timing or Timing()
    full = (
        local_envoy.read_endpoints(local_envoy.endpoints_file(router.config, victim.kind))
        if how == "stop"
        else {}
    )
    load = Load(router.url, world, rate)
    running = asyncio.create_task(load.run())
    await asyncio.sleep(timing.warm)
    before = len(_access_log(router))
    assert victim.process is not None
    faulted = time.monotonic()
    if how == "kill":
        victim.process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(victim.process.wait)
        await asyncio.sleep(timing.down)
    else:
        _set_present(router, victim, False, full)
        await asyncio.sleep(timing.drain)
        victim.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(victim.process.wait, 60)
    victim.launch(cluster.directory)
    assert victim.process is not None
    await asyncio.to_thread(wait_ready, victim.name, victim.process,
                            http_ok(f"http://127.0.0.1:{victim.port(8008)}/health"), timeout=120,
                            log=victim.log, interval=0.1)  # fmt: skip
    if how == "stop":
        _set_present(router, victim, True, full)
    answering = time.monotonic()
    while not await asyncio.to_thread(all_healthy, router, cluster):
        if time.monotonic() - faulted > 120:
            break
        await asyncio.sleep(0.05)
    back, router_after = time.monotonic() - faulted, time.monotonic() - answering
    await asyncio.sleep(0.5)  # requests the router sent before it saw the pool whole have answered
    settled = len(_access_log(router))
    await asyncio.sleep(timing.after)
    load.stop()
    await running
    await asyncio.sleep(0.3)  # the access log is flushed every 100 ms
    entries = _access_log(router)
    pools = {p.pool for p in cluster.processes if p.kind == victim.kind}
    baseline, recovered = _layout(entries[:before], pools), _layout(entries[settled:], pools)
    common = set(baseline) & set(recovered)
    outcome = Outcome(f"{how} {victim.kind}", victim.kind, len(load.sent), back_after=back,
                      router_after=router_after, longest_no_answer=_longest_no_answer(load.sent),
                      keys=len(common), moved=sum(baseline[k] != recovered[k] for k in common))  # fmt: skip
    for sent in load.sent:
        if not _failed(sent):
            continue
        label = f"{sent.kind.method} {sent.status or 'no answer'}"
        outcome.failures[label] = outcome.failures.get(label, 0) + 1
        in_flight = sent.started < faulted <= sent.ended and sent.kind.pool == victim.kind
        if how == "kill" and in_flight and not sent.kind.safe and not sent.long_poll:
            outcome.allowed += 1
        else:
            outcome.unexpected += 1
    return outcome


def victims(cluster: Cluster) -> list[Process]:
    """One instance each of a hashed pool (room), a least-request pool (client_reader) and sync."""
    return [cluster.by_pool(pool) for pool in ("room", "client_reader", "sync")]
