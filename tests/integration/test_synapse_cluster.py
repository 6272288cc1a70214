"""The synapse chart's worker cluster booted from the rendered ConfigMap (tests/integration/conftest.py):
every process up and replicating, every stream writer through its own port, well-known served, and
clients through the rendered routes in the real Envoy."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import unquote

import httpx

from devstack.mas import MasStandIn
from devstack.redis import LocalRedis
from devstack.synapse_cluster import Cluster
from matrix_stack.shared.route import envoy as local_envoy
from tests.integration.conftest import _login


def redis_clients(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"CLIENT LIST\r\n")
        reply = b""
        while not reply.endswith(b"\r\n") or reply.count(b"\n") < 2:
            reply += sock.recv(65536)
        return reply.count(b"id=")


def test_real_worker_cluster_boots_and_replicates(cluster: Cluster, redis: LocalRedis) -> None:
    # main + one process of every pool, two of room, sync and client_reader
    assert len(cluster.processes) == 24
    for process in cluster.processes:
        assert process.process is not None, process.name
        assert process.process.poll() is None, process.name
        log = process.log.read_text() if process.log else ""
        assert "ConfigError" not in log, process.name
    # Every process holds a Redis connection (publisher and subscriber) for replication.
    assert redis_clients(redis.port) >= 2 * len(cluster.processes)


def test_every_stream_writer_through_its_own_port(cluster: Cluster, mas: MasStandIn) -> None:
    """Each write goes to its writer's HTTP port; the effects reach a sync worker over replication."""

    def url(pool: str, path: str) -> str:
        return f"http://127.0.0.1:{cluster.by_pool(pool).port(8008)}{path}"

    with httpx.Client(timeout=30) as http:
        base = url("main", "")
        alice, alice_auth = _login(http, mas, "alice", admin=True)
        bob, bob_auth = _login(http, mas, "bob")
        room = http.post(
            f"{base}/_matrix/client/v3/createRoom", json={"invite": [bob]}, headers=alice_auth
        ).json()["room_id"]
        assert (
            http.post(f"{base}/_matrix/client/v3/join/{room}", json={}, headers=bob_auth).status_code == 200
        )
        bob_device = http.get(f"{base}/_matrix/client/v3/account/whoami", headers=bob_auth).json()[
            "device_id"
        ]

        def ok(response: httpx.Response) -> dict[str, Any]:
            assert response.status_code == 200, (response.request.url, response.text)
            body: dict[str, Any] = response.json()
            return body

        # events: created on a room worker, persisted by the event persister
        event_id = ok(http.put(url("room", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"),
                               json={"msgtype": "m.text", "body": "through the workers"}, headers=alice_auth))["event_id"]  # fmt: skip
        ok(http.put(url("typing", f"/_matrix/client/v3/rooms/{room}/typing/{alice}"),
                    json={"typing": True, "timeout": 30000}, headers=alice_auth))  # fmt: skip
        ok(http.put(url("to_device", "/_matrix/client/v3/sendToDevice/m.test/t1"),
                    json={"messages": {bob: {bob_device: {"hello": "bob"}}}}, headers=alice_auth))  # fmt: skip
        ok(http.post(url("receipts", f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"), json={},
                     headers=bob_auth))  # fmt: skip
        ok(http.put(url("push_rules", "/_matrix/client/v3/pushrules/global/content/tagsale"),
                    json={"pattern": "sale", "actions": ["notify"]}, headers=bob_auth))  # fmt: skip
        ok(http.put(url("account_data", f"/_matrix/client/v3/user/{bob}/account_data/m.test"),
                    json={"set": "on the writer"}, headers=bob_auth))  # fmt: skip
        ok(http.put(url("presence", f"/_matrix/client/v3/presence/{bob}/status"), json={"presence": "online"},
                    headers=bob_auth))  # fmt: skip
        keys = ok(http.post(url("device_lists", "/_matrix/client/v3/keys/upload"),
                            json={"one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "k", "signatures": {}}}},
                            headers=bob_auth))  # fmt: skip
        assert keys["one_time_key_counts"]["signed_curve25519"] == 1
        media = ok(http.post(url("media_repository", "/_matrix/media/v3/upload?filename=a.txt"), content=b"quarantine me",
                             headers={**alice_auth, "Content-Type": "text/plain"}))["content_uri"]  # fmt: skip
        server, media_id = media.removeprefix("mxc://").split("/")
        ok(http.post(url("quarantined_media", f"/_synapse/admin/v1/media/quarantine/{server}/{media_id}"), json={},
                     headers=alice_auth))  # fmt: skip

        # Everything reaches bob's sync on the sync worker.
        seen: dict[str, bool] = {}
        for _ in range(60):
            sync = ok(
                http.get(url("sync", "/_matrix/client/v3/sync"), params={"timeout": 0}, headers=bob_auth)
            )
            joined = sync["rooms"]["join"].get(room, {})
            seen = {
                "event": any(e.get("event_id") == event_id for e in joined.get("timeline", {}).get("events", [])),
                "typing": any(e["type"] == "m.typing" and alice in e["content"]["user_ids"]
                              for e in joined.get("ephemeral", {}).get("events", [])),
                "receipt": any(e["type"] == "m.receipt" for e in joined.get("ephemeral", {}).get("events", [])),
                "to_device": any(e["type"] == "m.test" for e in sync.get("to_device", {}).get("events", [])),
                "account_data": any(e["type"] == "m.test" for e in sync.get("account_data", {}).get("events", [])),
            }  # fmt: skip
            if all(seen.values()):
                break
            time.sleep(0.5)
        assert all(seen.values()), seen
        # The strict writers refuse writes elsewhere: the configuration really decides.
        wrong = http.put(url("client_reader", f"/_matrix/client/v3/rooms/{room}/typing/{alice}"),
                         json={"typing": True, "timeout": 30000}, headers=alice_auth)  # fmt: skip
        assert wrong.status_code == 500


def test_well_known_served_by_the_cluster(cluster: Cluster) -> None:
    base = f"http://127.0.0.1:{cluster.by_pool('main').port(8008)}"
    client = httpx.get(f"{base}/.well-known/matrix/client").json()
    assert client["org.matrix.msc4143.rtc_foci"] == [
        {"type": "livekit", "livekit_service_url": "https://rtc.example.org/jwt"}
    ]
    assert httpx.get(f"{base}/.well-known/matrix/server").json() == {"m.server": "example.org:443"}


def _access_log(router: local_envoy.LocalEnvoy, count: int) -> list[dict[str, Any]]:
    path = router.access_log
    assert path is not None
    for _ in range(100):
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(line) for line in lines]
        time.sleep(0.1)
    raise AssertionError(f"access log has {len(lines)} lines, expected {count}")


async def test_clients_through_the_router(
    cluster: Cluster, mas: MasStandIn, router: local_envoy.LocalEnvoy
) -> None:
    """A matrix-nio client and raw requests through the real Envoy with the rendered routes: every
    request succeeds, and the access log names the pool each one was meant for."""
    from nio import (
        AsyncClient,
        LoginResponse,
        RoomCreateResponse,
        RoomMessagesResponse,
        RoomSendResponse,
        SyncResponse,
    )

    expected: list[tuple[str, str, str]] = []  # (method, path prefix, pool) in the order sent

    def expect(method: str, path: str, pool: str) -> None:
        expected.append((method, path, pool))

    for name, admin in (("dana", True), ("erin", False)):
        mas.passwords[name] = f"pw-{name}-123"
        if admin:
            mas.admins.add(name)
    dana = AsyncClient(router.url, "dana")
    erin = AsyncClient(router.url, "erin")
    http = httpx.AsyncClient(base_url=router.url, timeout=30)
    try:
        expect("POST", "/_matrix/client/v3/login", "mas")
        assert isinstance(await dana.login("pw-dana-123"), LoginResponse)
        expect("POST", "/_matrix/client/v3/login", "mas")
        assert isinstance(await erin.login("pw-erin-123"), LoginResponse)
        auth = {"Authorization": f"Bearer {dana.access_token}"}
        erin_auth = {"Authorization": f"Bearer {erin.access_token}"}

        async def call(
            method: str, path: str, pool: str, headers: dict[str, str] | None = None, **kw: Any
        ) -> Any:
            expect(method, path.split("?")[0], pool)
            reply = await http.request(method, path, headers=headers or auth, **kw)
            assert reply.status_code == 200, (method, path, reply.status_code, reply.text)
            return (
                reply.json()
                if reply.headers.get("content-type", "").startswith("application/json")
                else reply.content
            )

        expect("POST", "/_matrix/client/v3/createRoom", "client_reader")
        created = await dana.room_create(name="routed", invite=[erin.user_id])
        assert isinstance(created, RoomCreateResponse), created
        room = created.room_id
        expect("POST", f"/_matrix/client/v3/join/{room}", "room")
        await erin.join(room)
        expect("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/", "room")
        sent = await dana.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": "through the router"}
        )
        assert isinstance(sent, RoomSendResponse), sent
        event = sent.event_id
        await call(
            "PUT", f"/_matrix/client/v3/rooms/{room}/state/m.room.topic/", "room", json={"topic": "routing"}
        )
        extra = (await call("PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/t2", "room",
                            json={"msgtype": "m.text", "body": "to redact"}))["event_id"]  # fmt: skip
        await call("PUT", f"/_matrix/client/v3/rooms/{room}/redact/{extra}/t3", "room", json={})
        await call("PUT", f"/_matrix/client/v3/rooms/{room}/typing/{dana.user_id}", "typing",
                   json={"typing": True, "timeout": 10000})  # fmt: skip
        await call(
            "POST",
            f"/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}",
            "receipts",
            headers=erin_auth,
            json={},
        )
        await call("POST", f"/_matrix/client/v3/rooms/{room}/read_markers", "receipts", headers=erin_auth,
                   json={"m.fully_read": event})  # fmt: skip
        await call("PUT", "/_matrix/client/v3/sendToDevice/m.test/t4", "to_device",
                   json={"messages": {erin.user_id: {erin.device_id: {"hello": "erin"}}}})  # fmt: skip
        await call(
            "PUT",
            f"/_matrix/client/v3/user/{dana.user_id}/account_data/m.test",
            "account_data",
            json={"a": 1},
        )
        await call("PUT", f"/_matrix/client/v3/user/{dana.user_id}/rooms/{room}/tags/m.favourite", "account_data",
                   json={"order": 0.5})  # fmt: skip
        await call("PUT", "/_matrix/client/v3/pushrules/global/content/tagsale", "push_rules",
                   json={"pattern": "sale", "actions": ["notify"]})  # fmt: skip
        await call(
            "PUT",
            f"/_matrix/client/v3/presence/{dana.user_id}/status",
            "presence",
            json={"presence": "online"},
        )
        keys = {"one_time_keys": {"signed_curve25519:AAAAAQ": {"key": "k", "signatures": {}}}}
        await call("POST", "/_matrix/client/v3/keys/upload", "device_lists", headers=erin_auth, json=keys)
        await call(
            "POST", "/_matrix/client/v3/keys/query", "client_reader", json={"device_keys": {erin.user_id: []}}
        )
        claimed = await call("POST", "/_matrix/client/v3/keys/claim", "client_reader",
                             json={"one_time_keys": {erin.user_id: {erin.device_id: "signed_curve25519"}}})  # fmt: skip
        assert claimed["one_time_keys"][erin.user_id][erin.device_id]
        await call("POST", "/_matrix/client/v3/room_keys/version", "client_reader",
                   json={"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {"public_key": "x"}})  # fmt: skip
        png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                            "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")  # fmt: skip
        uploaded = await call("POST", "/_matrix/media/v3/upload?filename=a.png", "media_repository",
                              content=png, headers={**auth, "Content-Type": "image/png"})  # fmt: skip
        server, media_id = uploaded["content_uri"].removeprefix("mxc://").split("/")
        assert (
            await call("GET", f"/_matrix/client/v1/media/download/{server}/{media_id}", "media_repository")
            == png
        )
        await call(
            "GET",
            f"/_matrix/client/v1/media/thumbnail/{server}/{media_id}?width=1&height=1",
            "media_repository",
        )
        await call(
            "POST", "/_matrix/client/v3/user_directory/search", "user_dir", json={"search_term": "erin"}
        )
        await call(
            "POST", f"/_synapse/admin/v1/media/quarantine/{server}/{media_id}", "quarantined_media", json={}
        )
        await call("GET", "/_matrix/client/v3/pushrules/", "push_rules")
        await call("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "sync",
                   json={"lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 1, "required_state": []}}})  # fmt: skip
        # Pagination: one room's /messages always on one room instance; sync: one user's on one sync instance.
        rooms = [room]
        for n in range(11):
            expect("POST", "/_matrix/client/v3/createRoom", "client_reader")
            more = await dana.room_create(name=f"r{n}")
            assert isinstance(more, RoomCreateResponse), more
            rooms.append(more.room_id)
        for _ in range(3):
            for each in rooms:
                expect("GET", f"/_matrix/client/v3/rooms/{each}/messages", "room")
                page = await dana.room_messages(each, start="", limit=5)
                assert isinstance(page, RoomMessagesResponse), page
        for client in (dana, erin, dana, erin, dana):
            expect("GET", "/_matrix/client/v3/sync", "sync")
            assert isinstance(await client.sync(timeout=0), SyncResponse)
        await call("POST", "/_matrix/client/v3/rooms/" + room + "/leave", "room", headers=erin_auth, json={})
        # Federation-shaped requests: reads anywhere in the pool, /send/ hashed by origin.
        await call("GET", "/_matrix/federation/v1/version", "federation_reader", headers={})
        await call("GET", "/_matrix/key/v2/server", "federation_reader", headers={})
        expect("PUT", "/_matrix/federation/v1/send/1", "federation_reader")
        unsigned = await http.put("/_matrix/federation/v1/send/1", json={"pdus": [], "edus": []},
                                  headers={"Authorization": 'X-Matrix origin="remote.example",key="ed25519:a",sig="x"'})  # fmt: skip
        assert unsigned.status_code == 401  # reached a federation reader, which checks the signature
    finally:
        await dana.close()
        await erin.close()
        await http.aclose()

    log = _access_log(router, len(expected))
    assert len(log) == len(expected)
    for entry, (method, prefix, pool) in zip(log, expected, strict=True):
        assert entry["method"] == method, (entry, method, prefix)
        assert unquote(entry["path"]).startswith(unquote(prefix)), (entry, prefix)
        assert entry["pool"] == pool, (entry, pool)
        if not prefix.startswith("/_matrix/federation/v1/send"):
            assert int(entry["status"]) < 400, entry
    # Stickiness, with two room and two sync instances.
    by_room: dict[str, set[str]] = {}
    for entry in log:
        if entry["path"].endswith("/messages"):
            by_room.setdefault(entry["hash_key"], set()).add(entry["upstream"])
    assert len(by_room) == 12
    assert all(len(upstreams) == 1 for upstreams in by_room.values()), by_room
    assert len(set().union(*by_room.values())) == 2  # both room instances serve some rooms
    by_user: dict[str, set[str]] = {}
    for entry in log:
        if entry["path"] == "/_matrix/client/v3/sync":
            by_user.setdefault(entry["hash_key"], set()).add(entry["upstream"])
    assert set(by_user) == {"dana", "erin"}  # MAS tokens: the user found through whoami
    assert all(len(upstreams) == 1 for upstreams in by_user.values()), by_user
