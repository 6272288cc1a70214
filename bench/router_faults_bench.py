"""Worker loss and rolling restarts through the router (devstack/router_faults.py), with the times.

The synapse chart's worker cluster (two instances of room, sync and client_reader) booted from its
rendered configuration on a real PostgreSQL and Redis, the chart's router in the real Envoy in front;
a load of the realistic request mix at ROUTER_FAULTS_RATE requests/s (plus one long poll per user).
One instance each of room (hashed), client_reader (least request) and sync is killed (-9), then each
is stopped as a rolling restart stops a pod. Per fault: requests sent, client-visible failures by
status, those allowed (in flight on the killed instance and unsafe to repeat), the longest time any
key had no answer, and how long until the router had the pool whole with every key back home.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from devstack import router_faults
from devstack.mas import MasStandIn
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.redis import LocalRedis
from devstack.synapse_cluster import MAS_SECRET, boot
from tests.charts import helm

RATE = float(os.environ.get("ROUTER_FAULTS_RATE", "30"))
VALUES = {
    "pools": {name: {"replicas": 1} for name in ("event_persister", "room", "sync", "client_reader")},
    "extraConfig": {
        key: {"per_second": 1000, "burst_count": 1000} for key in ("rc_message", "rc_room_creation")
    },
}


async def main() -> None:
    helm.build_dependencies("synapse")
    documents = helm.template(
        "synapse", helm.CHARTS / "synapse" / "ci" / "default-values.yaml", values=VALUES
    )
    data = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse")[
        "data"
    ]
    config = yaml.safe_load(data["homeserver.yaml"])
    instances = sorted((set(config["instance_map"]) - {"main"}) | set(config["pusher_instances"])
                       | set(config["federation_sender_instances"])
                       | {config["run_background_tasks_on"], config["update_user_directory_from_worker"],
                          config["media_instance_running_background_jobs"]})  # fmt: skip
    postgres, redis = LocalPostgres(free_port()), LocalRedis(free_port())
    mas = MasStandIn(free_port(), synapse="", shared_secret=MAS_SECRET)
    postgres.start()
    redis.start()
    mas.start()
    try:
        postgres.create_database("synapse")
        with tempfile.TemporaryDirectory(prefix="bench-router-faults-") as name:
            directory = Path(name)
            cluster = boot(data, instances, directory=directory / "cluster", postgres_port=postgres.port,
                           database="synapse", redis_port=redis.port, mas_endpoint=mas.url,
                           replicas={"room": 2, "sync": 2, "client_reader": 2})  # fmt: skip
            mas.synapse = f"http://127.0.0.1:{cluster.by_pool('main').port(8008)}"
            router = router_faults.start_router(documents, cluster, mas, directory / "router")
            try:
                world = router_faults.prepare(router.url, mas)
                print(f"router faults: {len(cluster.processes)} Synapse processes, the chart's router; "
                      f"load {RATE:.0f} requests/s of the mix plus {len(world.users)} long polls")  # fmt: skip
                for how in ("kill", "stop"):
                    for victim in router_faults.victims(cluster):
                        router_faults.wait_whole(router, cluster)
                        outcome = await router_faults.fault(
                            router, cluster, world, victim, how=how, rate=RATE
                        )
                        print("  " + outcome.line(), flush=True)
            finally:
                router.stop()
                cluster.stop()
    finally:
        mas.stop()
        redis.stop()
        postgres.stop()
