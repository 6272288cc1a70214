"""The rendered MatrixRTC registration in every process of the booted worker cluster, the rendered
routes in the real Envoy: a MAS user's rtc/livekit request forwarded to a livekit-jwt stand-in."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from devstack.mas import MasStandIn
from devstack.synapse_cluster import Cluster
from matrix_stack.shared.route import envoy as local_envoy
from tests.integration.conftest import LivekitJwtStandIn, _login


def test_matrixrtc_through_the_router_to_livekit_jwt(
    cluster: Cluster, mas: MasStandIn, router: local_envoy.LocalEnvoy, livekit_jwt: LivekitJwtStandIn
) -> None:
    """The rendered registration in every process of the real cluster, the rendered routes in the
    real Envoy, MAS on: a MAS user's request under rtc/livekit reaches a client_reader, which
    authenticates the user through MAS and forwards it to livekit-jwt with the registration's
    hs_token and the user's ID. Main and other workers forward it too (the route's fallback)."""
    body = {
        "room_id": "!call:example.org",
        "slot_id": "m.call#ROOM",
        "member": {"id": "m-1", "claimed_device_id": "D"},
    }
    paths = ["/_matrix/client/v1/rtc/livekit/get_token",
             "/_matrix/client/unstable/io.element.msc4195/rtc/livekit/get_token",
             "/_matrix/client/v1/rtc/livekit/delegate_delayed_leave"]  # fmt: skip
    livekit_jwt.received.clear()
    with httpx.Client(timeout=30) as http:
        user, auth = _login(http, mas, "gwen")
        for path in paths:
            reply = http.post(router.url + path, json=body, headers=auth)
            assert reply.status_code == 200, (path, reply.text)
            assert reply.json()["jwt"] == "from-the-stand-in"
        anonymous = http.post(router.url + paths[0], json=body)
        assert anonymous.status_code == 401  # Synapse refuses it; livekit-jwt never sees it
        for pool in ("main", "room", "sync"):
            direct = http.post(
                f"http://127.0.0.1:{cluster.by_pool(pool).port(8008)}{paths[0]}", json=body, headers=auth
            )
            assert direct.status_code == 200, (pool, direct.text)
    assert [r.path for r in livekit_jwt.received] == [*paths, paths[0], paths[0], paths[0]]
    token = auth["Authorization"].removeprefix("Bearer ")
    for forwarded in livekit_jwt.received:
        assert forwarded.method == "POST"
        assert forwarded.headers["authorization"] == f"Bearer {livekit_jwt.hs_token}"
        assert forwarded.headers["x-matrix-user-identifier"] == user
        assert json.loads(forwarded.body) == body
        assert token not in json.dumps(forwarded.headers)  # the user's token stays with Synapse
    log = router.access_log
    assert log is not None
    entries: list[dict[str, Any]] = []
    for _ in range(100):
        entries = [e for e in map(json.loads, log.read_text().splitlines()) if "/rtc/livekit/" in e["path"]]
        if len(entries) == 4:
            break
        time.sleep(0.1)
    assert [(e["path"], e["pool"], e["route"]) for e in entries] == [
        (p, "client_reader", "matrixrtc") for p in [*paths, paths[0]]]  # fmt: skip
    assert [int(e["status"]) for e in entries] == [200, 200, 200, 401]
